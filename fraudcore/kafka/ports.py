"""The Kafka port: what the services need of a Kafka client, as Protocols.

One adapter per client library implements them (fraudcore/kafka/kafka_python/), and a Driver
makes its clients. Everything crossing the port is the project's own vocabulary
(fraudcore/kafka/types.py) and errors (fraudcore/errors.py): the services never see a client
library's types, options, futures or exceptions. tests/integration/test_port_contract.py holds
every adapter to the same behaviour on a real broker; tests/fakes.py has a fake for unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from fraudcore.config import CommonSettings
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES, TopicSpec
from fraudcore.errors import ClientError, KafkaSecurityError
from fraudcore.kafka.types import (
    Committed,
    ConsumedRecord,
    Deliveries,
    Fetched,
    Output,
    PartitionedOutput,
    TopicPartition,
)
from fraudcore.runtime import StopFlag

PartitionsCallback = Callable[[set[TopicPartition]], None]


@dataclass(frozen=True)
class GroupConsumerConfig:
    """A consumer group member that never commits by itself and reads only committed records,
    from the earliest offset when the group has no commit yet."""

    group_id: str
    session_timeout_ms: int
    max_poll_records: int
    # The largest record it must be able to fetch.
    max_record_bytes: int = DEAD_LETTER_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ProducerConfig:
    """An idempotent producer (acks=all); transactional when `transactional_id` is set.
    `max_block_ms`: how long a send may wait for buffer space or metadata before it fails."""

    transactional_id: str | None = None
    transaction_timeout_ms: int = 60_000
    batch_bytes: int = 64 * 1024
    max_request_bytes: int = 1024 * 1024
    delivery_timeout_ms: int = 120_000
    max_block_ms: int = 60_000


class Consumer(Protocol):
    """A consumer group member."""

    def subscribe(
        self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback
    ) -> None:
        """The callbacks run inside poll(); what they raise comes out of poll() as it is."""

    def poll(self, timeout_ms: int) -> Fetched: ...

    def assignment(self) -> set[TopicPartition]: ...

    def committed(self, tp: TopicPartition) -> Committed | None:
        """The group's committed position of `tp`; None if there is none. Waits for the
        offsets of a pending transaction to settle (KIP-447)."""

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def seek_to_beginning(self, tp: TopicPartition) -> None: ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Fetch nothing more for these until resumed."""

    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    def group_metadata(self) -> object:
        """What a transactional producer sends with the offsets (the group's generation)."""

    def commit(self, offsets: Mapping[TopicPartition, Committed]) -> None: ...

    def lag(self, tp: TopicPartition) -> int | None:
        """Records of `tp` after the position, as last fetched; None if not known yet."""

    def close(self) -> None: ...


class Producer(Protocol):
    """A producer: sends, delivery counts, and the transaction calls (each bounded by
    `seconds`: TransactionStalledError when it does not complete in time)."""

    def send(self, outputs: Iterable[Output]) -> int:
        """Send each output in order; how many were sent. Raises BufferFullError (with the
        count sent first) when the buffer stays full, or metadata cannot be had, too long."""

    def send_to_partitions(self, outputs: Iterable[PartitionedOutput]) -> int:
        """send(), each to the partition it names rather than the one its key hashes to."""

    def deliveries(self) -> Deliveries:
        """What the broker answered since the last call, in order of sending."""

    def prepare(self, topic: str) -> None:
        """Fetch the topic's metadata now, so that the first send does not wait for it."""

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, Committed], group: object, seconds: float
    ) -> None: ...

    def commit_transaction(self, seconds: float) -> None: ...

    def abort_transaction(self, seconds: float) -> None: ...

    def flush(self, seconds: float | None = None) -> None: ...

    def close(self, seconds: float) -> None:
        """Send what is pending (up to `seconds`), then stop."""

    def discard(self) -> None:
        """Stop at once, whatever it holds: a replacement takes its transactional id."""


class Reader(Protocol):
    """A consumer outside any group that reads only committed records of partitions it is
    given: the velocity restores, the audit and the dashboard."""

    def topics(self) -> set[str]: ...

    def partitions(self, topic: str) -> list[TopicPartition]:
        """The topic's partitions; empty when it does not exist (or is not visible)."""

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...

    def offsets_for_times(
        self, times_ms: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset at or after each time; None where there is none."""

    def assign(self, tps: Sequence[TopicPartition]) -> None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def seek_to_beginning(self, tps: Sequence[TopicPartition]) -> None: ...

    def position(self, tp: TopicPartition) -> int: ...

    def pause(self, tps: Sequence[TopicPartition]) -> None: ...

    def resume(self, tps: Sequence[TopicPartition]) -> None: ...

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]: ...

    def close(self) -> None: ...


class Admin(Protocol):
    """The broker side: topics, their ACLs, a group's offsets."""

    def ensure_topics(self, topics: list[TopicSpec]) -> None:
        """Create the missing topics, then check that we may use them as each TopicSpec says.
        Raises KafkaSecurityError when a needed ACL is missing."""

    def committed_offsets(
        self, group: str, tps: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]: ...

    def describe_cluster(self) -> int:
        """One small request: how many brokers the cluster has. Raises ClientError when the
        broker does not answer."""

    def close(self) -> None: ...

    def __enter__(self) -> Admin: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Probe(Protocol):
    """The health probe's broker check (one connection of its own, built on first use)."""

    def __call__(self) -> None: ...

    def close(self) -> None: ...


class Driver(Protocol):
    """One client library behind the port: makes its clients and knows its quirks' names."""

    name: str
    # The library's logger names, and the name of a client's I/O thread, so that logging can
    # cap the library's chatter and the health probe's own lines can be told apart.
    loggers: tuple[str, ...]

    def io_thread_name(self, client_id: str) -> str: ...

    def consumer(
        self, settings: CommonSettings, client_id: str, config: GroupConsumerConfig
    ) -> Consumer: ...

    def producer(
        self, settings: CommonSettings, client_id: str, config: ProducerConfig
    ) -> Producer: ...

    def reader(
        self,
        settings: CommonSettings,
        client_id: str,
        *,
        from_latest: bool = False,
        request_timeout_ms: int | None = None,
    ) -> Reader: ...

    def wait_for_broker(
        self, settings: CommonSettings, stop: StopFlag, client_id: str
    ) -> Admin | None:
        """An admin client once the broker answers (None if stopped while waiting); raises
        BrokerUnavailableError after BROKER_WAIT_SECONDS, KafkaSecurityError on a refusal."""

    def admin(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> Admin: ...

    def probe(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> Probe: ...

    def describe_refusal(
        self, exc: KafkaSecurityError | ClientError, settings: CommonSettings
    ) -> str:
        """One line for a refusal by the broker (a missing ACL, wrong credentials)."""
