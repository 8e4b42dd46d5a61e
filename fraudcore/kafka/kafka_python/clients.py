"""The kafka-python adapter's group consumer and producer (fraudcore/kafka/ports.py).

Everything kafka-python-specific about them lives here: option names, futures, the
max_poll_records cap behind Fetched.full, the wrapping of what a rebalance listener raises, and
the errors mapped onto the project's own. What they need of kafka-python's internals is in
workarounds.py beside this file.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from fraudcore.config import CommonSettings
from fraudcore.errors import BufferFullError, ClientError, KafkaSecurityError
from fraudcore.kafka.deadline import call_with_deadline
from fraudcore.kafka.kafka_python.errors import client_error
from fraudcore.kafka.kafka_python.partitioner import KeyHashPartitioner
from fraudcore.kafka.kafka_python.sender_guard import keep_transactional_requests
from fraudcore.kafka.kafka_python.workarounds import (
    discard_producer,
    resume_unfinished_join,
    underlying_error,
)
from fraudcore.kafka.ports import GroupConsumerConfig, PartitionsCallback, ProducerConfig
from fraudcore.kafka.types import (
    Committed,
    Deliveries,
    Fetched,
    Output,
    PartitionedOutput,
    TopicPartition,
)
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer

# How long a producer waits to fill a batch: a few ms of latency buys batches, not requests.
PRODUCER_LINGER_MS = 5
RECONNECT_BACKOFF_MAX_MS = 1000
# A transaction's first request often finds the broker still writing the previous one's markers
# (CONCURRENT_TRANSACTIONS); kafka-python sleeps retry_backoff_ms before each retry of it. The
# Java client retries that case after 20 ms, not 100.
TRANSACTIONAL_RETRY_BACKOFF_MS = 20

T = TypeVar("T")


def client_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """Options every kafka-python client of ours gets: where the broker is, who we are, how we
    log in."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        # Retry a lost connection at least once a second, as the Java clients do; kafka-python's
        # default backs off up to 30 s, so a client noticed a restarted broker only that late.
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if settings.kafka_security_protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = settings.kafka_security_protocol
    if settings.uses_sasl:
        password = settings.sasl_password
        if password is None or not settings.kafka_sasl_username:  # settings validation forbids it
            raise KafkaSecurityError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value()
    if settings.uses_tls:
        # Built (and checked) once from KAFKA_SSL_CA_FILE, _CERT_FILE, _KEY_FILE and
        # KAFKA_SSL_CHECK_HOSTNAME; kafka-python then ignores its own ssl_* options.
        options["ssl_context"] = settings.ssl_context
    return options


def fetch_options(max_record_bytes: int) -> dict[str, Any]:
    """Fetch sizes that let a record of `max_record_bytes` through; kafka-python's own client
    metrics (nothing here reads them) off, as they cost CPU on every record."""
    return {
        "fetch_max_bytes": max_record_bytes * 4,
        "max_partition_fetch_bytes": max_record_bytes,
        "metrics_enabled": False,
    }


def to_kafka(tp: TopicPartition) -> KafkaTopicPartition:
    """kafka-python checks that partitions are its own namedtuple, not just equal tuples."""
    return KafkaTopicPartition(tp.topic, tp.partition)


def offsets_to_kafka(
    offsets: Mapping[TopicPartition, Committed],
) -> dict[KafkaTopicPartition, OffsetAndMetadata]:
    return {to_kafka(tp): OffsetAndMetadata(c.offset, c.metadata, -1) for tp, c in offsets.items()}


def mapped(call: Callable[[], T]) -> T:
    """Run a kafka-python call, its errors mapped onto the project's."""
    try:
        return call()
    except KafkaError as exc:
        raise client_error(exc) from exc


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no types
    """Runs our callbacks inside poll() and keeps what they raise: kafka-python wraps it in a
    KafkaError("User rebalance callback throws an error"), and poll() raises it unwrapped."""

    def __init__(self, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned
        self.raised: BaseException | None = None

    def _run(self, callback: PartitionsCallback, partitions: set[Any]) -> None:
        try:
            callback({TopicPartition(tp.topic, tp.partition) for tp in partitions})
        except BaseException as exc:
            self.raised = exc
            raise

    def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._run(self._on_revoked, revoked)

    def on_partitions_assigned(self, assigned: set[Any]) -> None:
        self._run(self._on_assigned, assigned)


class Consumer:
    """A group member (fraudcore.kafka.ports.Consumer) on a KafkaConsumer."""

    def __init__(self, consumer: KafkaConsumer, max_poll_records: int) -> None:
        self.client = consumer  # for the benchmark's raw-pipe row (bench/baselines.py)
        self.max_poll_records = max_poll_records
        self._listener: _Listener | None = None

    def subscribe(
        self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback
    ) -> None:
        self._listener = _Listener(on_revoked, on_assigned)
        self.client.subscribe([topic], listener=self._listener)

    def poll(self, timeout_ms: int) -> Fetched:
        try:
            records = self.client.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            listener = self._listener
            if listener is not None and listener.raised is not None:
                raised, listener.raised = listener.raised, None
                raise raised from None
            raise client_error(exc) from exc
        # A rejoin cut short by timeout_ms is otherwise dropped (workarounds.py): no partitions.
        resume_unfinished_join(self.client)
        count = sum(len(batch) for batch in records.values())
        return Fetched(records, full=count >= self.max_poll_records)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self.client.assignment()}

    def committed(self, tp: TopicPartition) -> Committed | None:
        found = mapped(lambda: self.client.committed(to_kafka(tp), metadata=True))
        return None if found is None else Committed(found.offset, found.metadata or "")

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.client.seek(to_kafka(tp), offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.client.seek_to_beginning(to_kafka(tp))

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.client.pause(*map(to_kafka, partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.client.resume(*map(to_kafka, partitions))

    def group_metadata(self) -> object:
        return self.client.group_metadata()

    def commit(self, offsets: Mapping[TopicPartition, Committed]) -> None:
        kept = offsets_to_kafka(offsets)
        mapped(lambda: self.client.commit(kept))

    def lag(self, tp: TopicPartition) -> int | None:
        partition = to_kafka(tp)
        highwater = self.client.highwater(partition)
        if highwater is None:
            return None
        position = mapped(lambda: self.client.position(partition, timeout_ms=50))
        return None if position is None else max(0, highwater - position)

    def close(self) -> None:
        self.client.close(autocommit=False)


class Producer:
    """A producer (fraudcore.kafka.ports.Producer) on a KafkaProducer.

    Deliveries are counted without a callback per acknowledged record: the futures wait in
    order and are settled when asked (a callback would run on the I/O thread and compete for
    the GIL); only a failure runs one, so that it is known even while earlier sends wait.
    """

    def __init__(self, producer: KafkaProducer) -> None:
        self.client = producer  # for the benchmark's raw-pipe row (bench/baselines.py)
        self._in_flight: deque[Any] = deque()  # kafka-python's futures: is_done, exception
        self._lock = threading.Lock()
        self._failed = 0
        self._first_failure: BaseException | None = None

    def _error(self, exc: BaseException) -> ClientError:
        """Our error for `exc`; a refusal by a producer in its error state as the error that
        put it there (workarounds.underlying_error), so that fencing is seen as fencing."""
        return client_error(underlying_error(self.client, exc))

    def _on_failure(self, exc: BaseException) -> None:  # on kafka-python's I/O thread
        with self._lock:
            self._failed += 1
            if self._first_failure is None:
                self._first_failure = exc

    def send(self, outputs: Iterable[Output]) -> int:
        return self._send_each(outputs)

    def send_to_partitions(self, outputs: Iterable[PartitionedOutput]) -> int:
        return self._send_each(outputs)

    def _send_each(self, outputs: Iterable[Output | PartitionedOutput]) -> int:
        send, track, failed = self.client.send, self._in_flight.append, self._on_failure
        count = 0
        try:
            for target, key, value, headers in outputs:
                if isinstance(target, str):
                    sent = send(target, value=value, key=key, headers=headers)
                else:
                    topic, partition = target
                    sent = send(topic, value=value, key=key, headers=headers, partition=partition)
                track(sent.add_errback(failed))
                count += 1
        except KafkaTimeoutError as exc:  # max_block_ms: buffer full or no metadata
            raise BufferFullError(count, exc) from exc
        except KafkaError as exc:
            raise self._error(exc) from exc
        return count

    def deliveries(self) -> Deliveries:
        in_flight, acknowledged = self._in_flight, 0
        while in_flight and in_flight[0].is_done:
            if in_flight.popleft().exception is None:
                acknowledged += 1
        with self._lock:
            failed, first = self._failed, self._first_failure
            self._failed, self._first_failure = 0, None
        return Deliveries(acknowledged, failed, None if first is None else self._error(first))

    def prepare(self, topic: str) -> None:
        self._mapped(lambda: self.client.partitions_for(topic))

    def begin_transaction(self) -> None:
        self._mapped(self.client.begin_transaction)

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, Committed], group: object, seconds: float
    ) -> None:
        kept = offsets_to_kafka(offsets)
        call = self.client.send_offsets_to_transaction
        self._bounded(lambda: call(kept, group), seconds, "send_offsets_to_transaction")

    def commit_transaction(self, seconds: float) -> None:
        self._bounded(self.client.commit_transaction, seconds, "commit_transaction")

    def abort_transaction(self, seconds: float) -> None:
        self._bounded(self.client.abort_transaction, seconds, "abort_transaction")

    def _bounded(self, call: Callable[[], None], seconds: float, what: str) -> None:
        """kafka-python 3.0.12 waits for a transactional call without a timeout, and its sender
        drops a transactional request whose coordinator connection is down at the moment it is
        sent (Sender._maybe_send_pending_request: await_ready raises, the request is neither
        sent nor queued again; sender_guard.py keeps it). Bounded all the same."""
        self._mapped(lambda: call_with_deadline(call, seconds, what))

    def _mapped(self, call: Callable[[], object]) -> None:
        try:
            call()
        except KafkaError as exc:
            raise self._error(exc) from exc

    def flush(self, seconds: float | None = None) -> None:
        self._mapped(lambda: self.client.flush(timeout=seconds))

    def close(self, seconds: float) -> None:
        """Send what is pending (up to `seconds`), then stop; what is still pending then is
        dropped, as discard() does: a stopping service has nothing more to wait for."""
        try:
            self.client.close(timeout=seconds)
        except KafkaError:
            self.discard()

    def discard(self) -> None:
        discard_producer(self.client)


def new_consumer(settings: CommonSettings, client_id: str, config: GroupConsumerConfig) -> Consumer:
    consumer = mapped(
        lambda: KafkaConsumer(
            **client_options(settings, client_id),
            **fetch_options(config.max_record_bytes),
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=min(3000, config.session_timeout_ms // 3),
            max_poll_records=config.max_poll_records,
        )
    )
    return Consumer(consumer, config.max_poll_records)


def producer_options(
    settings: CommonSettings, client_id: str, config: ProducerConfig
) -> dict[str, Any]:
    options: dict[str, Any] = {
        **client_options(settings, client_id),
        # Idempotent with acks=all: a retried send can neither be lost nor written twice.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": PRODUCER_LINGER_MS,
        "batch_size": config.batch_bytes,
        "max_request_size": config.max_request_bytes,
        "delivery_timeout_ms": config.delivery_timeout_ms,
        "max_block_ms": config.max_block_ms,
        # kafka-python's own client metrics (nothing here reads them) cost its sender thread
        # CPU on every record.
        "metrics_enabled": False,
        "partitioner": KeyHashPartitioner(),  # same placement as the default, less CPU
    }
    if config.transactional_id is not None:
        options["transactional_id"] = config.transactional_id
        options["transaction_timeout_ms"] = config.transaction_timeout_ms
        options["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
    return options


def new_producer(settings: CommonSettings, client_id: str, config: ProducerConfig) -> Producer:
    """An idempotent producer; a transactional one runs init_transactions() too, which fences
    an older producer with the same transactional id and aborts what it left open."""
    producer = mapped(lambda: KafkaProducer(**producer_options(settings, client_id, config)))
    if config.transactional_id is not None:
        keep_transactional_requests(producer)
        try:
            producer.init_transactions()
        except BaseException as exc:
            producer.close(timeout=0)
            if isinstance(exc, KafkaError):
                raise client_error(exc) from exc
            raise
    return Producer(producer)
