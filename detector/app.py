"""Consume transactions, classify each, republish it byte for byte to legit, fraud or dead-letter.

Offsets move only together with the outputs: in exactly_once mode inside one Kafka transaction,
in at_least_once mode by committing after every output has been acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Protocol

from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    AuthorizationError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    UnsupportedVersionError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from detector.config import DetectorSettings
from fraudcore import service
from fraudcore.core.rule import Verdict, classify
from fraudcore.health import Liveness
from fraudcore.kafka_io import (
    KafkaSecurityError,
    TopicSpec,
    client_options,
    describe_refusal,
    ensure_topics,
    producer_options,
)
from fraudcore.kafka_workarounds import (
    TransactionStalledError,
    call_with_deadline,
    discard_producer,
    underlying_error,
)
from fraudcore.metrics import DetectorMetrics
from fraudcore.runtime import StatsLine, StopFlag, freeze_startup_heap
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
POLL_RETRY_SECONDS = 0.5

TRANSACTIONAL_RETRY_BACKOFF_MS = 20

# Errors no retry can cure: the setup is wrong. The process exits and says why. (Being fenced
# by a newer detector with the same TRANSACTIONAL_ID is fatal too; see _abort_transaction.)
FATAL_ERRORS = (AuthorizationError, UnsupportedVersionError, KafkaConfigurationError)
# What a producer sees once another one took its transactional id over, or once the broker
# aborted its transaction on timeout (which bumps the epoch, too).
FENCING_ERRORS = (ProducerFencedError, InvalidProducerEpochError)
# A producer that failed this many times in a row, each time replaced, is not worth another try.
MAX_PRODUCER_RESETS_IN_A_ROW = 5


class ConsumedRecord(Protocol):
    """What the detector uses of a kafka-python ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


class FatalDetectorError(RuntimeError):
    """The detector cannot go on safely; its committed state is consistent, so a restart resumes."""


class OutputNotWrittenError(RuntimeError):
    """An output of the open transaction was not written: the transaction must not commit."""


def output_topics(settings: DetectorSettings) -> dict[Verdict, str]:
    return {
        Verdict.LEGIT: settings.legit_topic,
        Verdict.FRAUD: settings.fraud_topic,
        Verdict.INVALID: settings.dead_letter_topic,
    }


def required_topics(settings: DetectorSettings) -> list[TopicSpec]:
    partitions = settings.transactions_topic_partitions
    # access: the ACL operations checked at start-up (secure mode: README "Security")
    return [
        TopicSpec(settings.transactions_topic, partitions, access=("READ",)),
        TopicSpec(settings.legit_topic, partitions, access=("WRITE",)),
        TopicSpec(settings.fraud_topic, partitions, access=("WRITE",)),
        TopicSpec(
            settings.dead_letter_topic,
            partitions,
            {"max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)},
            access=("WRITE",),
        ),
    ]


def make_consumer(settings: DetectorSettings) -> KafkaConsumer:
    """A group member that never commits by itself and reads only committed input.

    It learns the input's partitions before it joins the group: a member that leads the group
    while its metadata has no partitions for the topic yet (a topic created a moment ago)
    assigns nothing, and kafka-python rebalances only once its metadata is refreshed, after
    metadata_max_age_ms (5 minutes). Seen as a detector idle with `assigned partitions: []`.
    """
    consumer = KafkaConsumer(
        **client_options(settings, "detector"),
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
        max_poll_records=settings.max_poll_records,
        fetch_max_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
        max_partition_fetch_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
        # kafka-python's own client metrics (nothing here reads them) cost CPU on every record:
        # off, fetching a record costs ~7% less CPU (bench/, README "Performance").
        metrics_enabled=False,
    )
    consumer.partitions_for_topic(settings.transactions_topic)
    return consumer


def make_producer(settings: DetectorSettings) -> KafkaProducer:
    """Idempotent always; transactional in exactly_once mode."""
    options = producer_options(settings, "detector")
    if settings.processing_guarantee == "exactly_once":
        options["transactional_id"] = settings.effective_transactional_id
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
        # A transaction's first request often finds the broker still writing the previous
        # one's markers (CONCURRENT_TRANSACTIONS); kafka-python sleeps retry_backoff_ms before
        # each retry of it. The Java client retries that case after 20 ms, not 100.
        options["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
    producer = KafkaProducer(
        **options,
        batch_size=256 * 1024,
        max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024,
    )
    if settings.processing_guarantee == "exactly_once":
        try:
            producer.init_transactions()  # fences an older instance with the same transactional id
        except BaseException:
            producer.close(timeout=0)
            raise
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
    """The consume-classify-produce loop. Offsets move only with the outputs they account for.

    Every send is tracked, in both guarantees: a batch commits only when each of its outputs
    was acknowledged, whatever the client library reports about the transaction.
    """

    def __init__(
        self,
        settings: DetectorSettings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        stop: StopFlag,
        clock: Callable[[], float] = time.monotonic,
        *,
        metrics: DetectorMetrics | None = None,
        new_producer: Callable[[], KafkaProducer] | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        # Makes a replacement for a transactional producer that cannot go on (see _reset_producer).
        self._new_producer = new_producer
        self._resets_in_a_row = 0
        # A transaction older than this may have been aborted by the broker; the calls that
        # commit one share this much time.
        self._transaction_timeout = settings.transaction_timeout_ms / 1000
        # Counts a batch's records once its outputs are durable (fraudcore/metrics.py).
        self.metrics = metrics if metrics is not None else DetectorMetrics()
        self.liveness = liveness if liveness is not None else Liveness(float("inf"), clock)
        self._clock = clock
        self._exactly_once = settings.processing_guarantee == "exactly_once"
        self._topics = output_topics(settings)
        self._commit_interval = settings.commit_interval_ms / 1000
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}
        self._batch_started = 0.0
        self._in_transaction = False
        # Sends of the open batch that failed, and the first failure (set by _on_send_error).
        # A batch's sends report to its number only: a late failure of a batch already given
        # up (e.g. of a producer that was replaced) does not count against the next one.
        self._batch_number = 0
        self._send_lock = threading.Lock()  # the I/O thread reports, the loop ends batches
        self._failed_sends = 0
        self._send_error: BaseException | None = None
        # The rebalance listener runs inside poll(): what it cannot do there waits for poll's end.
        self._revoking = False
        self._rewind_after_poll = False
        self._fatal: FatalDetectorError | None = None
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
            [self.settings.transactions_topic], listener=_CommitBeforeRevoke(self._commit_on_revoke)
        )

    def run(self) -> int:
        """Process until stopped, then commit what was processed. 0 on a clean stop."""
        self.subscribe()
        freeze_startup_heap()
        self.liveness.start()
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
        try:
            batch = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except KafkaError as exc:
            if self._fatal is not None:  # raised in the rebalance listener; kafka-python wraps it
                raise self._fatal from exc
            if not exc.retriable:
                raise
            # kafka-python's poll() raises e.g. KafkaConnectionError while the broker is away
            # (looking up the group coordinator); nothing was consumed, so just try again.
            log.warning("poll failed, retrying: %r", exc)
            self.stop.wait(POLL_RETRY_SECONDS)
            return
        self.liveness.beat()
        if self._rewind_after_poll:
            # The batch committed at revocation failed. kafka-python keeps the position of a
            # partition that stays assigned, so this poll may hold records past the committed
            # offsets: drop them and read again from the commit.
            self._rewind_after_poll = False
            self._rewind()
            return
        try:
            if batch:
                self._open_batch()
            for tp, records in batch.items():
                self._route(records)
                self._pending[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        except KafkaError as exc:  # the producer refused a record: the whole batch is redone
            self._abandon_batch(exc)
        if self._pending and (
            self._clock() - self._batch_started >= self._commit_interval
            or (self._exactly_once and self._caught_up(batch))
        ):
            self.commit()
        self.stats.maybe_log()
        self.metrics.maybe_update_lag(self.consumer)

    def _caught_up(self, batch: dict[TopicPartition, list[ConsumedRecord]]) -> bool:
        """The poll returned less than it could: nothing more is waiting in the fetch buffer.

        exactly_once commits then rather than waiting out COMMIT_INTERVAL_MS, because its outputs
        are invisible until the commit. Under load every poll is full, so batches grow to the
        interval; at a low rate a commit per poll keeps latency to the commit round trip (group
        commit: records arriving during a commit make up the next batch).
        """
        return sum(len(records) for records in batch.values()) < self.settings.max_poll_records

    def _open_batch(self) -> None:
        """Start a batch (and its Kafka transaction) unless one is open already."""
        if self._pending or self._in_transaction:
            return
        self._batch_started = self._clock()
        self.liveness.batch_opened()
        if self._exactly_once:
            self.producer.begin_transaction()
            self._in_transaction = True

    def _route(self, records: list[ConsumedRecord]) -> None:
        """Send each record of one partition's poll on to its topic. The loops run per record:
        what they need is looked up once, before them.

        All verdicts first, then all sends: two tight loops run measurably faster than one that
        alternates between the codec and kafka-python's send.
        """
        settings = self.settings
        threshold, max_bytes = settings.fraud_amount_threshold, settings.max_transaction_bytes
        verdicts = [classify(record.value, threshold, max_bytes) for record in records]
        send, topics, routed = self.producer.send, self._topics, self.metrics.routed
        # Every send is tracked: a failed one keeps the batch from committing (see commit()).
        errback = partial(self._on_send_error, self._batch_number)
        for record, result in zip(records, verdicts, strict=True):
            headers = record.headers
            if result.verdict is Verdict.INVALID:
                headers = [
                    *(headers or ()),
                    (HEADER_REASON, result.reason.encode()),
                    (HEADER_SOURCE_TOPIC, record.topic.encode()),
                    (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
                    (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
                ]
            send(
                topics[result.verdict], value=record.value, key=record.key, headers=headers
            ).add_errback(errback)
            routed(result.verdict, record.timestamp, result.reason)

    def _on_send_error(self, batch_number: int, exc: BaseException) -> None:
        """Runs on the producer's I/O thread when an output could not be written."""
        with self._send_lock:
            if batch_number != self._batch_number:
                return  # its batch was already aborted and its input rewound
            self._failed_sends += 1
            first = self._send_error is None
            if first:
                self._send_error = exc
        if first:
            log.error("an output could not be written; its batch will be processed again: %r", exc)

    def _raise_if_a_send_failed(self) -> None:
        if self._failed_sends:
            raise OutputNotWrittenError(
                f"{self._failed_sends} output(s) of the batch were not written: "
                f"{self._send_error!r}"
            ) from self._send_error

    def _commit_on_revoke(self) -> None:
        """Commit before the partitions go. Runs inside poll(), which wraps what it raises."""
        self._revoking = True
        try:
            self.commit()
        except FatalDetectorError as exc:
            self._fatal = exc
            raise
        finally:
            self._revoking = False

    def commit(self) -> None:
        """Make the processed batch durable: outputs and input offsets together."""
        if not self._pending and not self._in_transaction:
            return
        for verdict, count in self.metrics.pending_counts().items():
            self.stats.add(verdict, count)
        try:
            if self._exactly_once:
                self._commit_transaction()
            else:
                self._commit_after_flush()
        finally:
            self._end_batch()

    def _end_batch(self) -> None:
        """Forget the batch, committed or not: what was not committed is read again."""
        self._pending = {}
        self._in_transaction = False
        with self._send_lock:
            self._batch_number += 1  # from now on, what its sends report is ignored
            self._failed_sends = 0
            self._send_error = None
        self.metrics.discard_batch()  # whatever was not counted as committed by now
        self.liveness.batch_closed()

    def _commit_transaction(self) -> None:
        """Offsets into the transaction, every output acknowledged, then the commit.

        The flush before the commit is the guard against kafka-python 3.0.12, whose
        commit_transaction() can report success for a transaction the broker aborted: on
        INVALID_PRODUCER_EPOCH for a batch it bumps the producer epoch in the middle of the
        transaction (its KIP-360 path for idempotent producers), which aborts the transaction on
        the broker and fails the batch, and then completes a pending EndTxn without sending it.
        A failed batch always fails its records' futures first, so no batch with a failed output
        reaches the commit. All three calls share one TRANSACTION_TIMEOUT_MS.
        """
        deadline = self._clock() + self._transaction_timeout
        try:
            if self._pending:
                offsets, group = self._pending, self.consumer.group_metadata()
                call_with_deadline(
                    lambda: self.producer.send_offsets_to_transaction(offsets, group),
                    self._remaining(deadline),
                    "send_offsets_to_transaction",
                )
            self.producer.flush(timeout=self._remaining(deadline))
            self._raise_if_a_send_failed()
            call_with_deadline(
                self.producer.commit_transaction, self._remaining(deadline), "commit_transaction"
            )
            self.metrics.batch_committed(transaction=True)
            self._resets_in_a_row = 0
        except (KafkaError, TransactionStalledError, OutputNotWrittenError) as exc:
            self._abort_transaction(exc)
            self.metrics.batch_aborted()
            self._rewind_or_defer()

    def _remaining(self, deadline: float) -> float:
        return max(0.001, deadline - self._clock())

    def _abandon_batch(self, exc: KafkaError) -> None:
        """A record of the open batch could not be sent: undo the batch and read it again."""
        try:
            if self._exactly_once:
                self._abort_transaction(exc)
                self.metrics.batch_aborted()
            else:
                if isinstance(exc, FATAL_ERRORS):
                    raise FatalDetectorError(f"cannot send: {exc!r}") from exc
                log.warning("send failed, reprocessing the batch: %r", exc)
                self.producer.flush()  # let what was sent land, so its errbacks come now
            self._rewind_or_defer()
        finally:
            self._end_batch()

    def _abort_transaction(self, exc: BaseException) -> None:
        """Abort the failed transaction; replace the producer when it cannot abort it.

        Fencing is never a path to commit: a fenced producer's transaction is left to the
        broker, which has aborted it already, and the producer is not used again.
        """
        cause = underlying_error(self.producer, exc)
        if isinstance(exc, OutputNotWrittenError) and exc.__cause__ is not None:
            cause = exc.__cause__
        if isinstance(cause, FATAL_ERRORS):
            raise FatalDetectorError(f"transaction cannot complete: {cause!r}") from exc
        fenced = isinstance(cause, FENCING_ERRORS)
        if fenced and self._clock() - self._batch_started < self._transaction_timeout:
            # Too young for the broker to have aborted it on timeout: another producer took
            # this transactional id over. Going on would fence it in turn.
            raise FatalDetectorError(self._describe_fencing(cause)) from exc
        log.warning("transaction failed, aborting it and reprocessing its input: %r", exc)
        if not fenced:
            try:
                call_with_deadline(
                    self.producer.abort_transaction, self._transaction_timeout, "abort_transaction"
                )
                return
            except FATAL_ERRORS as abort_exc:
                raise FatalDetectorError(f"abort failed: {abort_exc!r}") from abort_exc
            except (KafkaError, TransactionStalledError) as abort_exc:
                log.warning("abort failed too: %r", abort_exc)
        self._reset_producer()

    def _describe_fencing(self, cause: BaseException) -> str:
        transactional_id = self.settings.effective_transactional_id
        if self.settings.transactional_id is not None:
            return (
                f"fenced by a newer producer with TRANSACTIONAL_ID={transactional_id!r}: another "
                "detector uses the same TRANSACTIONAL_ID; give each detector its own, or leave "
                "it unset for a unique default. Nothing of the open batch was committed "
                f"({cause!r})"
            )
        return (
            f"fenced by a newer producer with transactional id {transactional_id!r}. Nothing of "
            f"the open batch was committed ({cause!r})"
        )

    def _reset_producer(self) -> None:
        """Replace the transactional producer; the new one aborts what the old one left open.

        This is how a transaction that the broker aborted on timeout (e.g. during an outage
        longer than TRANSACTION_TIMEOUT_MS), or a stuck producer, is recovered from. Its input
        is read again from the committed offsets, so nothing is lost or doubled.
        """
        if self._new_producer is None:
            raise FatalDetectorError("the producer cannot go on and cannot be replaced")
        self._resets_in_a_row += 1
        if self._resets_in_a_row > MAX_PRODUCER_RESETS_IN_A_ROW:
            raise FatalDetectorError(
                f"the producer failed {MAX_PRODUCER_RESETS_IN_A_ROW} times in a row, each time "
                "replaced; giving up"
            )
        discard_producer(self.producer)
        while True:
            try:
                self.producer = self._new_producer()
            except FATAL_ERRORS as exc:
                raise FatalDetectorError(f"cannot make a new producer: {exc!r}") from exc
            except FENCING_ERRORS as exc:
                raise FatalDetectorError(self._describe_fencing(exc)) from exc
            except KafkaError as exc:
                log.warning("cannot make a new producer yet, the broker may be down: %r", exc)
                if self.stop.wait(1.0):
                    return
            else:
                log.info("the transactional producer was replaced; reprocessing from the commit")
                return

    def _commit_after_flush(self) -> None:
        self.producer.flush()
        if self._failed_sends:
            self._rewind_or_defer()
            return
        self.metrics.batch_committed()  # every output is acknowledged: counted whatever follows
        try:
            self.consumer.commit(self._pending)
        except KafkaError as exc:
            # Outputs are out but offsets are not: the batch will be seen again (at least once).
            log.warning("offset commit failed; the batch may be processed again: %r", exc)

    def _rewind_or_defer(self) -> None:
        """Rewind now, or, inside the rebalance listener, as soon as poll() returns."""
        if self._revoking:
            self._rewind_after_poll = True
        else:
            self._rewind()

    def _rewind(self) -> None:
        """Go back to the committed offsets, so that nothing of the failed batch is skipped.

        All assigned partitions, not only those of the failed batch: a batch can fail before its
        partitions were recorded, and beyond the committed offsets nothing is durable anyway.
        """
        for tp in self.consumer.assignment():
            while True:
                try:
                    committed = self.consumer.committed(tp)
                    break
                except FATAL_ERRORS as exc:
                    raise FatalDetectorError(f"cannot read the committed offsets: {exc!r}") from exc
                except KafkaError as exc:
                    log.warning("cannot read the committed offset of %s yet: %r", tp, exc)
                    if self.stop.wait(1.0):
                        return  # nothing past the committed offsets gets committed any more
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)


def main() -> int:
    try:
        settings, stop, metrics, admin, liveness = service.start(
            "detector", DetectorSettings, lambda _settings: DetectorMetrics()
        )
    except service.ServiceExit as exit_:
        return exit_.code
    try:
        with admin:
            ensure_topics(admin, required_topics(settings))
        consumer = make_consumer(settings)
        try:
            producer = make_producer(settings)
        except KafkaError:
            consumer.close()
            raise
        try:
            detector = Detector(
                settings,
                consumer,
                producer,
                stop,
                metrics=metrics,
                new_producer=lambda: make_producer(settings),
                liveness=liveness,
            )
            return detector.run()
        finally:
            detector.producer.close(timeout=10)  # the producer may have been replaced
            consumer.close(autocommit=False)
    except (KafkaSecurityError, AuthorizationError) as exc:  # a missing ACL: no retry
        log.error("%s", describe_refusal(exc, settings))
        return 1
