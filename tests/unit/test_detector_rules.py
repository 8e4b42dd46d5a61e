"""The detector with every rule type on, across failed batches, on the fake Kafka port: the
changelog goes out with the outputs of its batch, a failed batch sends the partition back to
RESTORING, and its state is rebuilt from the input (windows) and from the changelog (spikes)
before its records are processed again, so the outputs are those of an uninterrupted run."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from detector.app import Detector
from detector.config import DetectorSettings
from fraudcore.core.codec import encode
from fraudcore.core.model import Transaction
from fraudcore.core.rule import HEADER_RULES
from fraudcore.kafka.types import Fetched, Output, PartitionedOutput, Record, TopicPartition
from fraudcore.runtime import StopFlag
from tests.fakes import FakeConsumer
from tests.unit.test_detector_velocity import POLL, LogConsumer, OutputProducer

TP = TopicPartition("in", 0)
T0 = 1_800_000_000_000
AMOUNTS = ["10.00", "12.00", "11.00", "10.00", "95.00", "10.00"]
LOG = [
    Record(
        "in",
        0,
        n,
        T0 + 150 * n,
        b"k",
        encode(Transaction(f"ACC{n % 2}", "ZZZZZZ", Decimal(AMOUNTS[n % 6]), id=f"tx-{n}")),
    )
    for n in range(24)
]
RULES = """rules:
  - {name: amount, type: amount_above, threshold: 90}
  - {name: velocity, type: count_in_window, max_transactions: 3, window_seconds: 1}
  - {name: spike, type: amount_spike, history: 4, min_history: 2, z: 2}
  - {name: total, type: sum_in_window, max_amount: 100, window_seconds: 1}
"""


class RulesLogConsumer(LogConsumer):
    """LogConsumer over this module's LOG."""

    def poll(self, timeout_ms: int) -> Fetched:
        self.polls = [{TP: LOG[self.position : self.position + POLL]}]
        fetched = FakeConsumer.poll(self, timeout_ms)
        self.position += len(fetched)
        return fetched


class Reader:
    """The restore's reader: the input, and the changelog the producer has written."""

    def __init__(self, producer: OutputProducer) -> None:
        self.producer = producer
        self.changelog_read = 0

    def changelog(self, tp: TopicPartition) -> list[Record]:
        written: list[PartitionedOutput] = self.producer.written_to_partitions
        return [
            Record(t.topic, t.partition, n, 0, key, value, headers)
            for n, (t, key, value, headers) in enumerate(written)
            if t == tp
        ]

    def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        return 0, len(LOG) if tp == TP else len(self.changelog(tp))

    def read(self, tp: TopicPartition, start: int, end: int, timeout: float) -> Iterator[Record]:
        if tp == TP:
            yield from LOG[start:end]
            return
        records = self.changelog(tp)[start:end]
        self.changelog_read += len(records)
        yield from records

    def close(self) -> None:
        pass


def run(failing: set[int], rules_file: Path) -> tuple[list[Output], int, int]:
    settings = DetectorSettings(
        transactions_topic="in",
        legit_topic="legit",
        fraud_topic="fraud",
        consumer_group="group",
        processing_guarantee="at_least_once",
        rules_file=rules_file,
    )
    consumer, producer = RulesLogConsumer(), OutputProducer(failing)
    reader = Reader(producer)
    made = Detector(settings, consumer, producer, StopFlag(), new_reader=lambda: reader)  # type: ignore[arg-type,return-value]
    made.subscribe()
    for _ in range(40):
        made.poll_once()
        made.commit()
    assert consumer.position == len(LOG)
    return producer.written, len(producer.written_to_partitions), reader.changelog_read


@pytest.mark.parametrize("failing", [{2}, {3, 4}, {1, 5}])
def test_a_failed_batch_restores_every_rule_so_nothing_is_counted_twice(
    tmp_path: Path, failing: set[int]
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    expected, changelog, read_before = run(set(), rules_file)
    assert changelog > 0
    assert read_before == 0
    fired = {
        value for *_, headers in expected for name, value in headers or () if name == HEADER_RULES
    }
    for rule in (b"amount", b"velocity", b"spike", b"total"):  # each decides on this input
        assert any(rule in rules.split(b",") for rules in fired), (rule, fired)
    got, _, read = run(failing, rules_file)
    assert got == expected  # same records, same topics, same fraud.rules, in the same order
    assert read > 0  # the spikes were read back from the changelog
