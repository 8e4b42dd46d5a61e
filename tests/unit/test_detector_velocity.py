"""The detector's velocity windows across a failed batch: the input is read again from the
committed offsets, and the windows must be rebuilt there, or the replayed records would be
counted twice. On the fake Kafka port (tests/fakes.py), over an in-memory log of one
partition."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from detector.app import Detector
from detector.config import DetectorSettings
from fraudcore.core.codec import encode
from fraudcore.core.model import Transaction
from fraudcore.core.rule import HEADER_RULES
from fraudcore.errors import RetriableClientError
from fraudcore.kafka.types import Committed, Fetched, Output, TopicPartition
from fraudcore.runtime import StopFlag
from tests.fakes import FakeConsumer, FakeProducer

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


class LogConsumer(FakeConsumer):
    """A group member over LOG: poll reads POLL records from the position."""

    def __init__(self) -> None:
        super().__init__([TP], {}, POLL)
        self.position = 0

    def poll(self, timeout_ms: int) -> Fetched:
        self.polls = [{TP: LOG[self.position : self.position + POLL]}]
        fetched = super().poll(timeout_ms)
        self.position += len(fetched)
        return fetched

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.position = 0


class OutputProducer(FakeProducer):
    """at_least_once: what a flush acknowledges is written; the flushes in `failing` fail."""

    def __init__(self, failing: set[int]) -> None:
        super().__init__()
        self.failing = failing
        self.flushes = 0

    def flush(self, seconds: float | None = None) -> None:
        self.flushes += 1
        self.fail_sends = (
            RetriableClientError("not written") if self.flushes in self.failing else None
        )
        super().flush(seconds)


class LogReader:
    """The restore's reader over LOG; counts what it replays."""

    def __init__(self) -> None:
        self.replayed = 0

    def read(self, tp: TopicPartition, start: int, end: int, timeout: float) -> Iterator[Rec]:
        self.replayed += end - start
        yield from LOG[start:end]

    def close(self) -> None:
        pass


def run(failing: set[int]) -> tuple[list[Output], int]:
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
        consumer,
        producer,
        StopFlag(),
        new_reader=lambda: reader,  # type: ignore[arg-type,return-value]
    )
    made.subscribe()
    for _ in range(40):
        made.poll_once()
        made.commit()
    assert consumer.position == len(LOG)
    assert consumer.commits[TP] == Committed(len(LOG), consumer.commits[TP].metadata)  # type: ignore[union-attr]
    return producer.written, reader.replayed


@pytest.mark.parametrize("failing", [{2}, {3, 4}, {1, 5}])
def test_a_failed_batch_rebuilds_the_window_so_nothing_is_counted_twice(failing: set[int]) -> None:
    expected, replayed_before = run(set())
    assert replayed_before == 0
    fraud = [record for record in expected if record[0] == "fraud"]
    assert fraud  # the rule fires on this input: two accounts, a transaction each 300 ms
    assert {h for *_, headers in fraud for h in headers or ()} == {(HEADER_RULES, b"velocity")}
    got, replayed = run(failing)
    assert got == expected  # same records, same topics, same fraud.rules, in the same order
    assert replayed > 0  # the window was rebuilt from the input, not kept
