"""The project's own Kafka vocabulary: what the services, the checkpoint, the velocity windows,
the audit, the dashboard and the health probe speak, whichever client library is underneath.

The adapters (fraudcore/kafka/kafka_python/) translate to and from their library's types; a
record the client hands over is passed on as it is when it already has this shape
(ConsumedRecord is structural), so that no record is copied on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from fraudcore.errors import ClientError


class TopicPartition(NamedTuple):
    """One partition of a topic. A tuple: equal to, and hashed like, any client's own."""

    topic: str
    partition: int


Headers = Sequence[tuple[str, bytes]] | None


class ConsumedRecord(Protocol):
    """A record read from Kafka. `timestamp`: the record's own, in ms since the epoch."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


@dataclass(frozen=True, slots=True)
class Record:
    """A ConsumedRecord of our own making: for readers that copy, and for the tests' fakes."""

    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: Headers = field(default_factory=list)


class Committed(NamedTuple):
    """A consumer group's committed position: the next offset to read, and what was committed
    with it (the velocity window's checkpoint)."""

    offset: int
    metadata: str = ""


# One record to send: topic, key, value, headers.
Output = tuple[str, bytes | None, bytes | None, Headers]
# One record to send to a given partition (a changelog's): partition, key, value, headers.
PartitionedOutput = tuple[TopicPartition, bytes | None, bytes | None, Headers]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one poll returned, by partition, in offset order. `full`: the poll returned as much
    as it may (more is likely waiting); a poll that is not full has drained what was fetched."""

    records: Mapping[TopicPartition, Sequence[ConsumedRecord]]
    full: bool = False

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.records.values())


class Deliveries(NamedTuple):
    """What the broker answered about sent records since the producer was last asked:
    how many it acknowledged, how many failed, and the first failure as our own error."""

    acknowledged: int = 0
    failed: int = 0
    first_failure: ClientError | None = None


def label(tp: TopicPartition) -> str:
    """`topic-partition`, as Kafka's own tools write it."""
    return f"{tp.topic}-{tp.partition}"
