"""The Kafka port: the one module the services call for Kafka, and the only one that imports
the client library's public API (kafka-python 3.0.12). What it offers: client options from the
settings, waiting for the broker, topics and their ACLs, a consumer and a producer with the few
calls the services make, and the client's errors mapped to the project's own
(fraudcore/errors.py). What it needs of kafka-python's internals is in
fraudcore/kafka_workarounds.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kafka.errors import (
    AuthorizationError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    UnsupportedVersionError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from fraudcore.config import CommonSettings
from fraudcore.errors import (
    BrokerUnavailableError,
    ClientError,
    FencedError,
    KafkaSecurityError,
    NotAllowedError,
    RetriableClientError,
)
from fraudcore.kafka_sender_guard import keep_transactional_requests
from fraudcore.kafka_workarounds import (
    call_with_deadline,
    discard_producer,
    underlying_error,
)
from fraudcore.partitioner import KeyHashPartitioner
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer

__all__ = [
    "BrokerUnavailableError",
    "KafkaSecurityError",
    "OffsetAndMetadata",
    "TopicPartition",
]

log = logging.getLogger(__name__)

# How long a producer waits to fill a batch: a few ms of latency buys batches, not requests.
PRODUCER_LINGER_MS = 5


RECONNECT_BACKOFF_MAX_MS = 1000


def client_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """Options every Kafka client of ours gets: where the broker is, who we are, how we log in."""
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


def producer_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """client_options plus what both services' producers share: durable, ordered, lean."""
    return {
        **client_options(settings, client_id),
        # Idempotent with acks=all: a retried send can neither be lost nor written twice.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": PRODUCER_LINGER_MS,
        # kafka-python's own client metrics (nothing here reads them) cost its sender thread
        # ~15% more CPU per record (bench/, README "Performance").
        "metrics_enabled": False,
        "partitioner": KeyHashPartitioner(),  # same placement as the default, less CPU
    }


def principal(settings: CommonSettings) -> str:
    """Who the broker sees, for messages: the SASL user, else this client."""
    if settings.uses_sasl and settings.kafka_sasl_username:
        return f"user {settings.kafka_sasl_username!r}"
    return "this client"


# --------------------------------------------------------------------------- errors

# No retry can cure these: the setup is wrong.
_NOT_ALLOWED = (AuthorizationError, UnsupportedVersionError, KafkaConfigurationError)
# What a producer sees once another one took its transactional id over, or once the broker
# aborted its transaction on timeout (which bumps the epoch too).
_FENCED = (ProducerFencedError, InvalidProducerEpochError)


def client_error(exc: BaseException, producer: KafkaProducer | None = None) -> ClientError:
    """The project's error for one the client raised (or handed to a callback).

    With the producer given, the error behind a refusal of a producer in its error state is
    used (fraudcore.kafka_workarounds.underlying_error), so that fencing is seen as fencing.
    """
    if isinstance(exc, ClientError):
        return exc
    cause = underlying_error(producer, exc) if producer is not None else exc
    kind: type[ClientError]
    if isinstance(cause, _NOT_ALLOWED):
        kind = NotAllowedError
    elif isinstance(cause, _FENCED):
        kind = FencedError
    elif isinstance(cause, KafkaError) and cause.retriable:
        kind = RetriableClientError
    else:
        kind = ClientError
    return kind(repr(cause), cause)


# --------------------------------------------------------------------------- the clients


class ConsumedRecord(Protocol):
    """What the services use of a kafka-python ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


Headers = list[tuple[str, bytes]] | None
# One record to send: topic, key, value, headers.
Output = tuple[str, bytes | None, bytes | None, Headers]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python has no types
    def __init__(
        self,
        on_revoked: Callable[[set[TopicPartition]], None],
        on_assigned: Callable[[set[TopicPartition]], None],
    ) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_assigned(assigned)


class BufferFullError(RetriableClientError):
    """The producer's buffer stayed full, or the topic's metadata could not be had, for
    max_block_ms: the broker may be down. `sent`: how many of the records went out first."""

    def __init__(self, sent: int, cause: BaseException) -> None:
        super().__init__(f"producer buffer full or metadata unavailable: {cause!r}", cause)
        self.sent = sent


class Consumer:
    """A group member's calls, with the client's errors mapped to ClientError."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    @property
    def client(self) -> KafkaConsumer:
        """The client itself, for the benchmark's raw-pipe baseline (bench/baselines.py)."""
        return self._consumer

    def subscribe(
        self,
        topic: str,
        on_revoked: Callable[[set[TopicPartition]], None],
        on_assigned: Callable[[set[TopicPartition]], None],
    ) -> None:
        """on_revoked and on_assigned run inside poll(), which wraps what they raise."""
        self._consumer.subscribe([topic], listener=_Listener(on_revoked, on_assigned))

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, list[ConsumedRecord]]:
        try:
            return self._consumer.poll(timeout_ms=timeout_ms)  # type: ignore[no-any-return]
        except KafkaError as exc:
            raise client_error(exc) from exc

    def assignment(self) -> set[TopicPartition]:
        return self._consumer.assignment()  # type: ignore[no-any-return]

    def committed(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        """The group's committed offset of `tp` with its metadata; None if there is none.
        A read_committed consumer waits for a transaction's pending offsets (KIP-447)."""
        try:
            return self._consumer.committed(tp, metadata=True)
        except KafkaError as exc:
            raise client_error(exc) from exc

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(tp, offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._consumer.seek_to_beginning(tp)

    def group_metadata(self) -> Any:
        return self._consumer.group_metadata()

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            self._consumer.commit(dict(offsets))
        except KafkaError as exc:
            raise client_error(exc) from exc

    # Read by the lag gauge (fraudcore/metrics.py).
    def highwater(self, tp: TopicPartition) -> int | None:
        return self._consumer.highwater(tp)  # type: ignore[no-any-return]

    def position(self, tp: TopicPartition, timeout_ms: int) -> int | None:
        try:
            return self._consumer.position(tp, timeout_ms=timeout_ms)  # type: ignore[no-any-return]
        except KafkaError as exc:
            raise client_error(exc) from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class Producer:
    """A producer's calls: sends of a batch, the transaction calls (each within a deadline,
    see fraudcore.kafka_workarounds.call_with_deadline), with errors mapped to ClientError."""

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer

    @property
    def client(self) -> KafkaProducer:
        """The client itself, for the benchmark's raw-pipe baseline (bench/baselines.py)."""
        return self._producer

    def error(self, exc: BaseException) -> ClientError:
        return client_error(exc, self._producer)

    def send_batch(
        self, outputs: Iterable[Output], on_error: Callable[[BaseException], None]
    ) -> None:
        """Send each output; `on_error` runs on the I/O thread for each one that fails."""
        send = self._producer.send
        try:
            for topic, key, value, headers in outputs:
                send(topic, value=value, key=key, headers=headers).add_errback(on_error)
        except KafkaError as exc:
            raise self.error(exc) from exc

    def send_all(
        self, topic: str, records: list[tuple[bytes, bytes]], sent: Callable[[Any], None]
    ) -> None:
        """Send (key, value) records in order, handing each send's future to `sent`. Raises
        BufferFullError(count) when the buffer stays full (or metadata cannot be had) for
        max_block_ms: records[count] and after were not sent."""
        send = self._producer.send
        count = 0
        try:
            for key, value in records:
                sent(send(topic, key=key, value=value))
                count += 1
        except KafkaTimeoutError as exc:
            raise BufferFullError(count, exc) from exc
        except KafkaError as exc:
            raise self.error(exc) from exc

    def partitions_for(self, topic: str) -> None:
        """Fetch the topic's metadata now, so the first send does not wait for it."""
        try:
            self._producer.partitions_for(topic)
        except KafkaError as exc:
            raise self.error(exc) from exc

    def begin_transaction(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaError as exc:
            raise self.error(exc) from exc

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], group: Any, seconds: float
    ) -> None:
        self._transactional(
            lambda: self._producer.send_offsets_to_transaction(dict(offsets), group),
            seconds,
            "send_offsets_to_transaction",
        )

    def commit_transaction(self, seconds: float) -> None:
        self._transactional(self._producer.commit_transaction, seconds, "commit_transaction")

    def abort_transaction(self, seconds: float) -> None:
        self._transactional(self._producer.abort_transaction, seconds, "abort_transaction")

    def _transactional(self, call: Callable[[], None], seconds: float, what: str) -> None:
        try:
            call_with_deadline(call, seconds, what)
        except KafkaError as exc:
            raise self.error(exc) from exc

    def flush(self, seconds: float | None = None) -> None:
        try:
            self._producer.flush(timeout=seconds)
        except KafkaError as exc:
            raise self.error(exc) from exc

    def close(self, seconds: float) -> None:
        """Send what is pending (up to `seconds`), then stop; what is still pending then is
        dropped, as discard() does: a stopping service has nothing more to wait for."""
        try:
            self._producer.close(timeout=seconds)
        except KafkaError:
            self.discard()

    def discard(self) -> None:
        """Stop at once, whatever it still holds (a replacement takes its transactional id)."""
        discard_producer(self._producer)


def new_consumer(settings: CommonSettings, client_id: str, **options: Any) -> Consumer:
    """A consumer with the common client options; the caller's options on top."""
    try:
        consumer = KafkaConsumer(**client_options(settings, client_id), **options)
    except KafkaError as exc:
        raise client_error(exc) from exc
    return Consumer(consumer)


def new_producer(
    settings: CommonSettings, client_id: str, *, transactional: bool = False, **options: Any
) -> Producer:
    """An idempotent producer (producer_options); `transactional`: init_transactions() too,
    which fences an older producer with the same transactional_id and aborts what it left open."""
    try:
        producer = KafkaProducer(**producer_options(settings, client_id), **options)
    except KafkaError as exc:
        raise client_error(exc) from exc
    if transactional:
        keep_transactional_requests(producer)
        try:
            producer.init_transactions()
        except BaseException as exc:
            producer.close(timeout=0)
            if isinstance(exc, KafkaError):
                raise client_error(exc) from exc
            raise
    return Producer(producer)
