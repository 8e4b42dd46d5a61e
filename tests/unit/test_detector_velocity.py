"""The detector's velocity windows across a failed batch: the input is read again from the
committed offsets, and the windows must be rebuilt there, or the replayed records would be
counted twice. The fakes stand for kafka-python's clients behind the real port, over an
in-memory log of one partition."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from detector.app import Detector
from detector.config import DetectorSettings
from fraudcore.core.codec import encode
from fraudcore.core.model import Transaction
from fraudcore.core.rule import HEADER_RULES
from fraudcore.kafka_port import Consumer, Producer
from fraudcore.runtime import StopFlag

TP = TopicPartition("in", 0)
T0 = 1_800_000_000_000
POLL = 4  # records per poll


@dataclass
class Rec:
    offset: int
    value: bytes
    timestamp: int
    topic: str = "in"
    partition: int = 0
    key: bytes = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


LOG = [
    Rec(n, encode(Transaction(f"ACC{n % 2}", "ZZZZZZ", Decimal(10), id=f"tx-{n}")), T0 + 150 * n)
    for n in range(24)
]


class LogConsumer:
    """A group member over LOG: poll reads from the position, commits are kept."""

    def __init__(self) -> None:
        self.position = 0
        self.commits: dict[TopicPartition, OffsetAndMetadata] = {}

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener
        listener.on_partitions_assigned({TP})

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Rec]]:
        records = LOG[self.position : self.position + POLL]
        self.position += len(records)
        return {TP: records} if records else {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        return self.commits.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.position = 0

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.update(offsets)

    def group_metadata(self) -> str:
        return "group"

    def highwater(self, tp: TopicPartition) -> None:
        return None


class Future:
    def __init__(self, record: tuple[str, bytes, list[tuple[str, bytes]]]) -> None:
        self.record = record
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_errback(self, callback: Callable[[BaseException], None]) -> Future:
        self.errbacks.append(callback)
        return self


class NoTransactionError:
    """What fraudcore.kafka_workarounds.underlying_error reads of kafka-python's producer."""

    @staticmethod
    def has_error() -> bool:
        return False


class OutputProducer:
    """at_least_once: what a flush acknowledges is written; the flushes in `failing` fail."""

    def __init__(self, failing: set[int]) -> None:
        self._transaction_manager = NoTransactionError()
        self.failing = failing
        self.flushes = 0
        self.pending: list[Future] = []
        self.written: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> Future:
        future = Future((topic, value, list(headers or [])))
        self.pending.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
        done, self.pending = self.pending, []
        for future in done:
            if self.flushes in self.failing:
                for errback in future.errbacks:
                    errback(RuntimeError("not written"))
            else:
                self.written.append(future.record)

    def close(self, timeout: float | None = None) -> None:
        pass


class LogReader:
    """The restore's reader over LOG; counts what it replays."""

    def __init__(self) -> None:
        self.replayed = 0

    def read(self, tp: TopicPartition, start: int, end: int, timeout: float) -> Iterator[Rec]:
        self.replayed += end - start
        yield from LOG[start:end]

    def close(self) -> None:
        pass


def run(failing: set[int]) -> tuple[list[tuple[str, bytes, list[tuple[str, bytes]]]], int]:
    """Every record through an at_least_once detector with the velocity rule (N=2, W=1 s),
    committing after each poll; the flushes numbered in `failing` fail."""
    settings = DetectorSettings(
        transactions_topic="in",
        legit_topic="legit",
        fraud_topic="fraud",
        processing_guarantee="at_least_once",
        velocity_max_transactions=2,
        velocity_window_seconds=1.0,
    )
    consumer, producer, reader = LogConsumer(), OutputProducer(failing), LogReader()
    made = Detector(
        settings,
        Consumer(consumer),
        Producer(producer),
        StopFlag(),
        new_reader=lambda: reader,  # type: ignore[arg-type,return-value]
    )
    made.subscribe()
    for _ in range(40):
        made.poll_once()
        made.commit()
    assert consumer.position == len(LOG)
    assert consumer.commits[TP].offset == len(LOG)
    return producer.written, reader.replayed


@pytest.mark.parametrize("failing", [{2}, {3, 4}, {1, 5}])
def test_a_failed_batch_rebuilds_the_window_so_nothing_is_counted_twice(failing: set[int]) -> None:
    expected, replayed_before = run(set())
    assert replayed_before == 0
    fraud = [record for record in expected if record[0] == "fraud"]
    assert fraud  # the rule fires on this input: two accounts, a transaction each 300 ms
    assert {h for *_, headers in fraud for h in headers} == {(HEADER_RULES, b"velocity")}
    got, replayed = run(failing)
    assert got == expected  # same records, same topics, same fraud.rules, in the same order
    assert replayed > 0  # the window was rebuilt from the input, not kept
