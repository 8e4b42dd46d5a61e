"""Consume transactions, classify each, republish it byte for byte to legit, fraud or dead-letter.

Offsets move only together with the outputs: in exactly_once mode inside one Kafka transaction,
in at_least_once mode by committing after every output has been acknowledged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable

from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    AuthorizationError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    UnsupportedVersionError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from detector.config import DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.kafka_io import (
    BrokerUnavailableError,
    TopicSpec,
    client_options,
    ensure_topics,
    wait_for_broker,
)
from fraudcore.rule import Verdict, classify
from fraudcore.runtime import StatsLine, StopFlag, configure_logging
from kafka import KafkaConsumer, KafkaProducer

log = logging.getLogger(__name__)

# Headers added to a dead-lettered record, so an operator can find and replay its source.
HEADER_REASON = "error.reason"
HEADER_SOURCE_TOPIC = "error.source.topic"
HEADER_SOURCE_PARTITION = "error.source.partition"
HEADER_SOURCE_OFFSET = "error.source.offset"

# Dead letters keep the original bytes, so the topic accepts anything the input could hold.
DEAD_LETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
POLL_TIMEOUT_MS = 100

# Errors after which this producer can do nothing more: another instance took over (fencing),
# or the setup is wrong. Retrying cannot help; the process exits and is restarted.
FATAL_ERRORS = (
    ProducerFencedError,
    InvalidProducerEpochError,
    AuthorizationError,
    UnsupportedVersionError,
    KafkaConfigurationError,
    IllegalStateError,
)


class FatalDetectorError(RuntimeError):
    """The detector cannot go on safely; its committed state is consistent, so a restart resumes."""


def output_topics(settings: DetectorSettings) -> dict[Verdict, str]:
    return {
        Verdict.LEGIT: settings.legit_topic,
        Verdict.FRAUD: settings.fraud_topic,
        Verdict.INVALID: settings.dead_letter_topic,
    }


def required_topics(settings: DetectorSettings) -> list[TopicSpec]:
    partitions = settings.transactions_topic_partitions
    return [
        TopicSpec(settings.transactions_topic, partitions),
        TopicSpec(settings.legit_topic, partitions),
        TopicSpec(settings.fraud_topic, partitions),
        TopicSpec(
            settings.dead_letter_topic,
            partitions,
            {"max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)},
        ),
    ]


def make_consumer(settings: DetectorSettings) -> KafkaConsumer:
    """A group member that never commits by itself and reads only committed input."""
    return KafkaConsumer(
        **client_options(settings, "detector"),
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=settings.max_poll_records,
        fetch_max_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
        max_partition_fetch_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
    )


def make_producer(settings: DetectorSettings) -> KafkaProducer:
    """Idempotent always; transactional in exactly_once mode."""
    options = client_options(settings, "detector")
    if settings.processing_guarantee == "exactly_once":
        options["transactional_id"] = settings.effective_transactional_id
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
    producer = KafkaProducer(
        **options,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024,
    )
    if settings.processing_guarantee == "exactly_once":
        producer.init_transactions()  # fences an older instance with the same transactional id
    return producer


class _CommitBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish the open batch before partitions move to another detector."""

    def __init__(self, on_revoke: Callable[[], None]) -> None:
        self._on_revoke = on_revoke

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._on_revoke()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))


class Detector:
    """The consume-classify-produce loop. Offsets move only with the outputs they account for."""

    def __init__(
        self,
        settings: DetectorSettings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        stop: StopFlag,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        self._clock = clock
        self._exactly_once = settings.processing_guarantee == "exactly_once"
        self._topics = output_topics(settings)
        self._commit_interval = settings.commit_interval_ms / 1000
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}
        self._batch_started = 0.0
        self._in_transaction = False
        self._failed_sends = 0
        self.stats = StatsLine(log, settings.stats_interval_seconds, self._render)

    @staticmethod
    def _render(window: Counter[str], seconds: float) -> str:
        total = window["legit"] + window["fraud"] + window["invalid"]
        share = 100 * window["fraud"] / (window["legit"] + window["fraud"] or 1)
        return (
            f"detector: {total / seconds:.1f} tx/s legit={window['legit']} fraud={window['fraud']} "
            f"invalid={window['invalid']} fraud share {share:.1f}%"
        )

    def subscribe(self) -> None:
        self.consumer.subscribe(
            [self.settings.transactions_topic], listener=_CommitBeforeRevoke(self.commit)
        )

    def run(self) -> int:
        """Process until stopped, then commit what was processed. 0 on a clean stop."""
        self.subscribe()
        try:
            while not self.stop.is_set():
                self.poll_once()
            self.commit()
        except FatalDetectorError as exc:
            log.error("stopping: %s", exc)
            return 1
        finally:
            self.stats.maybe_log(force=True)
        return 0

    def poll_once(self) -> None:
        batch = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        for tp, records in batch.items():
            for record in records:
                self._route(record)
            self._pending[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if self._pending and self._clock() - self._batch_started >= self._commit_interval:
            self.commit()
        self.stats.maybe_log()

    def _route(self, record: object) -> None:
        if not self._pending and not self._in_transaction:
            self._batch_started = self._clock()
        if self._exactly_once and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        value: bytes | None = record.value  # type: ignore[attr-defined]
        result = classify(
            value, self.settings.fraud_amount_threshold, self.settings.max_transaction_bytes
        )
        headers = list(record.headers or [])  # type: ignore[attr-defined]
        if result.verdict is Verdict.INVALID:
            headers += [
                (HEADER_REASON, result.reason.encode()),
                (HEADER_SOURCE_TOPIC, record.topic.encode()),  # type: ignore[attr-defined]
                (HEADER_SOURCE_PARTITION, str(record.partition).encode()),  # type: ignore[attr-defined]
                (HEADER_SOURCE_OFFSET, str(record.offset).encode()),  # type: ignore[attr-defined]
            ]
        future = self.producer.send(
            self._topics[result.verdict],
            value=value,
            key=record.key,  # type: ignore[attr-defined]
            headers=headers,
        )
        if not self._exactly_once:
            future.add_errback(self._on_send_error)
        self.stats.add(result.verdict.value)

    def _on_send_error(self, exc: BaseException) -> None:
        self._failed_sends += 1
        log.error("an output could not be delivered; its input will be processed again: %r", exc)

    def commit(self) -> None:
        """Make the processed batch durable: outputs and input offsets together."""
        if not self._pending and not self._in_transaction:
            return
        try:
            if self._exactly_once:
                self._commit_transaction()
            else:
                self._commit_after_flush()
        finally:
            self._pending = {}
            self._in_transaction = False

    def _commit_transaction(self) -> None:
        try:
            if self._pending:
                self.producer.send_offsets_to_transaction(
                    self._pending, self.consumer.group_metadata()
                )
            self.producer.commit_transaction()
        except FATAL_ERRORS as exc:
            raise FatalDetectorError(f"transaction cannot complete: {exc!r}") from exc
        except KafkaError as exc:
            log.warning("transaction failed, aborting and reprocessing its input: %r", exc)
            try:
                self.producer.abort_transaction()
            except KafkaError as abort_exc:
                raise FatalDetectorError(f"abort failed: {abort_exc!r}") from abort_exc
            self._rewind()

    def _commit_after_flush(self) -> None:
        self.producer.flush()
        if self._failed_sends:
            self._failed_sends = 0
            self._rewind()
            return
        try:
            self.consumer.commit(self._pending)
        except KafkaError as exc:
            # Outputs are out but offsets are not: the batch will be seen again (at least once).
            log.warning("offset commit failed; the batch may be processed again: %r", exc)

    def _rewind(self) -> None:
        """Go back to the committed offsets, so that nothing of the failed batch is skipped."""
        for tp in self._pending:
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)


def main() -> int:
    try:
        settings = load_settings(DetectorSettings)
    except SettingsError as exc:
        print(f"detector: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    log.info("detector starting: %s", settings.describe())
    stop = StopFlag.install()
    try:
        admin = wait_for_broker(settings, stop, "detector")
    except BrokerUnavailableError as exc:
        log.error("%s", exc)
        return 1
    if admin is None:
        return 0
    with admin:
        ensure_topics(admin, required_topics(settings))
    consumer = make_consumer(settings)
    try:
        producer = make_producer(settings)
    except KafkaError:
        consumer.close()
        raise
    try:
        return Detector(settings, consumer, producer, stop).run()
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
