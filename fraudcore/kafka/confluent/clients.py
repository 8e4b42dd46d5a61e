"""The confluent-kafka adapter's group consumer and producer (fraudcore/kafka/ports.py), on
librdkafka. Everything confluent-specific about them lives here: option names, the message
objects turned into our records, cooperative rebalancing, delivery reports counted without a
Python callback per acknowledged record, and the errors mapped onto the project's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer as RdProducer

from fraudcore.config import CommonSettings
from fraudcore.errors import BufferFullError, ClientError
from fraudcore.kafka.confluent.common import (
    REQUEST_TIMEOUT_SECONDS,
    client_config,
    consume_arrived,
    log,
    mapped,
    offsets_to_rd,
    ours,
    records_of,
    to_rd,
)
from fraudcore.kafka.confluent.errors import client_error, kafka_error
from fraudcore.kafka.deadline import call_with_deadline
from fraudcore.kafka.ports import GroupConsumerConfig, PartitionsCallback, ProducerConfig
from fraudcore.kafka.types import (
    Committed,
    Deliveries,
    Fetched,
    Output,
    PartitionedOutput,
    TopicPartition,
)

PRODUCER_LINGER_MS = 5
# A transaction opened right after a commit finds the coordinator still writing the last one's
# markers (a few ms): AddOffsetsToTxn answers CONCURRENT_TRANSACTIONS and librdkafka retries after
# retry.backoff.ms, 100 by default, which held every exactly_once batch that long. Java's producer
# retries this case after 20 ms; later retries still back off exponentially to retry.backoff.max.ms.
TRANSACTION_RETRY_BACKOFF_MS = 10
# A transactional producer closes a connection idle this long (and opens it again when next
# needed). That is what wakes librdkafka 2.12's wait for a group coordinator whose broker died
# and was dropped from the metadata: the wait asks for the new coordinator only when some
# connection goes up or down (rd_kafka_coord_req_fsm), and with every connection kept open none
# does until the dead broker returns. A transactional producer busy with its batches leaves no
# connection idle that long; other clients keep theirs (no reconnecting at low rates).
TRANSACTIONAL_CONNECTIONS_MAX_IDLE_MS = 1000
# While the producer's queue is full, how long each wait for room lasts.
ROOM_WAIT_SECONDS = 0.05
# send_offsets_to_transaction's own timeout ends it with an error of librdkafka's when it holds;
# the thread's bound (fraudcore/kafka/deadline.py) comes this much later, for when it does not.
OFFSETS_DEADLINE_GRACE_SECONDS = 1.0
# A partition just assigned gets its fetcher only once librdkafka has its committed offsets,
# which waits while a transaction holds them (KIP-447: a killed detector's, until the broker
# aborts it), and a seek before that is refused (_STATE). The seek is tried again this often,
# for up to REQUEST_TIMEOUT_SECONDS.
SEEK_RETRY_SECONDS = 0.05


class Consumer:
    """A group member (fraudcore.kafka.ports.Consumer) on a librdkafka consumer."""

    def __init__(self, consumer: RdConsumer, max_poll_records: int) -> None:
        self.client = consumer
        self.max_poll_records = max_poll_records
        self._raised: BaseException | None = None

    def subscribe(
        self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback
    ) -> None:
        def run(callback: PartitionsCallback, partitions: list[Any]) -> None:
            try:
                callback(ours(partitions))
            except BaseException as exc:
                self._raised = exc  # librdkafka cannot carry it; poll() raises it
                raise

        self.client.subscribe(
            [topic],
            on_assign=lambda _c, partitions: run(on_assigned, partitions),
            on_revoke=lambda _c, partitions: run(on_revoked, partitions),
            # Lost (the session timed out): gone as if revoked; the commit then fails.
            on_lost=lambda _c, partitions: run(on_revoked, partitions),
        )

    def poll(self, timeout_ms: int) -> Fetched:
        try:
            messages = consume_arrived(self.client, self.max_poll_records, timeout_ms / 1000)
        except BaseException as exc:
            raised, self._raised = self._raised, None
            if raised is not None:
                raise raised from None
            if isinstance(exc, KafkaException):
                raise client_error(exc) from exc
            raise
        raised, self._raised = self._raised, None
        if raised is not None:
            raise raised
        return Fetched(records_of(messages), full=len(messages) >= self.max_poll_records)

    def assignment(self) -> set[TopicPartition]:
        return ours(self.client.assignment())

    def committed(self, tp: TopicPartition) -> Committed | None:
        found = mapped(lambda: self.client.committed([to_rd(tp)], REQUEST_TIMEOUT_SECONDS))[0]
        if found.error is not None:
            raise client_error(KafkaException(found.error))
        if found.offset < 0:
            return None
        return Committed(found.offset, found.metadata or "")

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._seek(to_rd(tp, offset))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._seek(to_rd(tp, OFFSET_BEGINNING))

    def _seek(self, position: Any) -> None:
        """Seek, waiting for the partition's fetcher to start (SEEK_RETRY_SECONDS)."""
        deadline = time.monotonic() + REQUEST_TIMEOUT_SECONDS
        while True:
            try:
                self.client.seek(position)
                return
            except KafkaException as exc:
                error = kafka_error(exc)
                refused = error is not None and error.code() == KafkaError._STATE
                if not refused or time.monotonic() >= deadline:
                    raise client_error(exc) from exc
            time.sleep(SEEK_RETRY_SECONDS)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        mapped(lambda: self.client.pause([to_rd(tp) for tp in partitions]))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        mapped(lambda: self.client.resume([to_rd(tp) for tp in partitions]))

    def group_metadata(self) -> object:
        return self.client.consumer_group_metadata()

    def commit(self, offsets: Mapping[TopicPartition, Committed]) -> None:
        kept = offsets_to_rd(offsets)
        mapped(lambda: self.client.commit(offsets=kept, asynchronous=False))

    def lag(self, tp: TopicPartition) -> int | None:
        rd = to_rd(tp)
        _low, high = mapped(lambda: self.client.get_watermark_offsets(rd, cached=True))
        position = mapped(lambda: self.client.position([rd]))[0].offset
        if high < 0 or position == OFFSET_INVALID:
            return None
        return max(0, int(high) - int(position))

    def close(self) -> None:
        self.client.close()


class Producer:
    """A producer (fraudcore.kafka.ports.Producer) on a librdkafka producer.

    librdkafka reports only failed deliveries (delivery.report.only.error), so no Python runs
    per acknowledged record: what was sent, less what failed and what is still queued, was
    acknowledged, in the order sent.
    """

    def __init__(self, options: dict[str, Any], max_block_ms: int) -> None:
        self._max_block = max_block_ms / 1000
        self._lock = threading.Lock()
        self._sent = 0  # not yet counted by deliveries()
        self._failed = 0
        self._first_failure: BaseException | None = None
        self.client = mapped(lambda: RdProducer({**options, "on_delivery": self._on_delivery}))

    def _on_delivery(self, error: Any, _message: Any) -> None:
        """librdkafka's delivery report: only failures come (delivery.report.only.error)."""
        if error is None:
            return
        with self._lock:
            self._failed += 1
            if self._first_failure is None:
                self._first_failure = KafkaException(error)

    def _serve(self, seconds: float) -> None:
        """Serve the delivery reports that are due. When the producer has hit a fatal error
        (fenced, or its transaction aborted by the broker), librdkafka raises it from poll():
        it is then the failure deliveries() reports, as a failed send would be."""
        try:
            self.client.poll(seconds)
        except KafkaException as exc:
            with self._lock:
                if self._first_failure is None:
                    self._first_failure = exc

    def send(self, outputs: Iterable[Output]) -> int:
        return self._produce_each(outputs)

    def send_to_partitions(self, outputs: Iterable[PartitionedOutput]) -> int:
        return self._produce_each(outputs)

    def _produce_each(self, outputs: Iterable[Output | PartitionedOutput]) -> int:
        produce, count = self.client.produce, 0
        try:
            for target, key, value, headers in outputs:
                # librdkafka's own "unassigned" (-1) lets its partitioner choose.
                topic, partition = (target, -1) if isinstance(target, str) else target
                try:
                    produce(topic, value, key, partition, headers=headers)
                except BufferError:
                    self._wait_for_room(topic, partition, key, value, headers=headers, count=count)
                count += 1
        except KafkaException as exc:
            raise client_error(exc) from exc
        finally:
            self._sent += count
        self._serve(0)
        return count

    def _wait_for_room(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Any,
        count: int,
    ) -> None:
        """The queue is full: let librdkafka send for up to max_block_ms, as kafka-python's
        send blocks, then give up with BufferFullError."""
        deadline = time.monotonic() + self._max_block
        while True:
            self._serve(ROOM_WAIT_SECONDS)
            try:
                self.client.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError as exc:
                if time.monotonic() >= deadline:
                    raise BufferFullError(count, exc) from exc

    def deliveries(self) -> Deliveries:
        self._serve(0)
        with self._lock:
            failed, first = self._failed, self._first_failure
            self._failed, self._first_failure = 0, None
        queued = len(self.client)
        answered = max(0, self._sent - queued)
        self._sent = queued
        acknowledged = max(0, answered - failed)
        return Deliveries(acknowledged, failed, None if first is None else client_error(first))

    def prepare(self, topic: str) -> None:
        mapped(lambda: self.client.list_topics(topic, timeout=self._max_block))

    def begin_transaction(self) -> None:
        mapped(self.client.begin_transaction)

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, Committed], group: object, seconds: float
    ) -> None:
        """librdkafka 2.12 waits for this call without a timeout of its own
        (rd_kafka_send_offsets_to_transaction: RD_POLL_INFINITE), and the TxnOffsetCommit it
        sends to the group coordinator can wait forever: when the coordinator's broker dies and
        is dropped from the metadata (decommissioned) before the coordinator was asked for
        again, the request waits for that broker (rd_kafka_coord_req_fsm), and is woken only
        when some broker connection goes up or down, in practice when the dead broker comes
        back. So it is bounded here (TransactionStalledError: the producer is replaced)."""
        kept = offsets_to_rd(offsets)
        call_with_deadline(
            lambda: mapped(lambda: self.client.send_offsets_to_transaction(kept, group, seconds)),
            seconds + OFFSETS_DEADLINE_GRACE_SECONDS,
            "send_offsets_to_transaction",
        )

    def commit_transaction(self, seconds: float) -> None:
        mapped(lambda: self.client.commit_transaction(seconds))

    def abort_transaction(self, seconds: float) -> None:
        mapped(lambda: self.client.abort_transaction(seconds))

    def flush(self, seconds: float | None = None) -> None:
        left = mapped(lambda: self.client.flush(-1 if seconds is None else seconds))
        if left:
            raise client_error(TimeoutError(f"{left} record(s) still unsent after the flush"))

    def close(self, seconds: float) -> None:
        try:
            self.client.flush(seconds)
        except KafkaException as exc:  # a fatal producer cannot flush; closing it still succeeds
            log.debug("flush on close failed: %s", exc)

    def discard(self) -> None:
        """librdkafka has no close: purge what it holds, and let it go."""
        try:
            self.client.purge(in_queue=True, in_flight=True, blocking=False)
        except KafkaException as exc:
            log.debug("purge on discard failed: %s", exc)


def new_consumer(
    settings: CommonSettings,
    client_id: str,
    config: GroupConsumerConfig,
    assignment_strategy: str = "cooperative-sticky",
) -> Consumer:
    """A group member on the classic protocol, or on KIP-848's consumer protocol when
    KAFKA_GROUP_PROTOCOL=consumer. librdkafka refuses the classic settings there: the broker owns
    the session timeout, the heartbeat interval (group.consumer.*) and the assignor."""
    options: dict[str, Any] = {
        **client_config(settings, client_id),
        "group.id": config.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.max.bytes": config.max_record_bytes * 4,
        "max.partition.fetch.bytes": config.max_record_bytes,
    }
    if settings.kafka_group_protocol == "consumer":
        options["group.protocol"] = "consumer"
    else:
        options["session.timeout.ms"] = config.session_timeout_ms
        options["heartbeat.interval.ms"] = min(3000, config.session_timeout_ms // 3)
        options["partition.assignment.strategy"] = assignment_strategy
    return Consumer(mapped(lambda: RdConsumer(options)), config.max_poll_records)


def new_producer(settings: CommonSettings, client_id: str, config: ProducerConfig) -> Producer:
    """An idempotent producer; a transactional one runs init_transactions() too, which fences
    an older producer with the same transactional id and aborts what it left open."""
    options: dict[str, Any] = {
        **client_config(settings, client_id),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": PRODUCER_LINGER_MS,
        "batch.size": config.batch_bytes,
        "message.max.bytes": config.max_request_bytes,
        "delivery.timeout.ms": config.delivery_timeout_ms,
        "delivery.report.only.error": True,
    }
    if config.transactional_id is not None:
        options["transactional.id"] = config.transactional_id
        options["transaction.timeout.ms"] = config.transaction_timeout_ms
        options["retry.backoff.ms"] = TRANSACTION_RETRY_BACKOFF_MS
        options["connections.max.idle.ms"] = TRANSACTIONAL_CONNECTIONS_MAX_IDLE_MS
        # librdkafka: a record may not outlive the transaction it belongs to.
        options["delivery.timeout.ms"] = min(
            config.delivery_timeout_ms, config.transaction_timeout_ms
        )
    made = Producer(options, config.max_block_ms)
    if config.transactional_id is not None:
        try:
            mapped(lambda: made.client.init_transactions(config.max_block_ms / 1000))
        except ClientError:
            made.discard()
            raise
    return made
