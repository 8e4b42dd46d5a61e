"""Measuring a failover: how long the detector's committed offsets (and the generator's input)
stand still while brokers die, and how many log lines that costs.

The watch samples from its own clients a few times a second. A stall is the time between two
advances of the committed input offsets while input was waiting; each kill is charged the
longest stall that overlaps the time until the next kill (or the end).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from kafka import KafkaAdminClient, KafkaConsumer
from tests.kafka_helpers import Topics

SAMPLE_SECONDS = 0.2
# A WARNING or worse of the services' human log format ("<date> <time> LEVEL   logger: ...").
LOUD_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


@dataclass
class Sample:
    """At `at`: the committed and the end offset of each input partition."""

    at: float
    committed: dict[int, int]
    produced: dict[int, int]


@dataclass
class CommitWatch:
    """Samples the group's committed input offsets and the input's end offsets in a thread."""

    bootstrap: str
    topics: Topics
    samples: list[Sample] = field(default_factory=list)
    failed_samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CommitWatch:
        self._thread = threading.Thread(target=self._run, name="commit-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        clients = self._clients()
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self.samples.append(self._sample(*clients))
            except KafkaError:
                # A client of this library may keep asking a dead coordinator: start afresh.
                self.failed_samples += 1
                self._close(clients)
                clients = self._clients()
        self._close(clients)

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        options = {"bootstrap_servers": self.bootstrap, "request_timeout_ms": 2000}
        return KafkaAdminClient(**options), KafkaConsumer(**options, reconnect_backoff_max_ms=500)

    @staticmethod
    def _close(clients: tuple[KafkaAdminClient, KafkaConsumer]) -> None:
        for client in clients:
            client.close()

    def _sample(self, admin: KafkaAdminClient, ends: KafkaConsumer) -> Sample:
        offsets = admin.list_group_offsets(self.topics.group).get(self.topics.group, {})
        committed = {
            tp.partition: m.offset for tp, m in offsets.items() if tp.topic == self.topics.input
        }
        partitions = ends.partitions_for_topic(self.topics.input) or set()
        tps = [TopicPartition(self.topics.input, p) for p in partitions]
        produced = {tp.partition: end for tp, end in ends.end_offsets(tps).items()} if tps else {}
        return Sample(time.monotonic(), committed, produced)

    def describe(self) -> str:
        last = self.samples[-1] if self.samples else None
        return f"{len(self.samples)} samples, {self.failed_samples} failed, last {last}"

    def committed(self) -> int:
        return sum(self.samples[-1].committed.values()) if self.samples else 0

    def stalls(self, of: str = "committed") -> list[tuple[float, float]]:
        """(start, end) of every interval in which an input partition's committed offset (or,
        `of`="produced", its end offset) stood still: from its last advance to its next one;
        for committed offsets only while input was waiting."""
        spans: list[tuple[float, float]] = []
        partitions = {p for sample in self.samples for p in sample.produced}
        for partition in partitions:
            last_value, last_at, waiting = -1, 0.0, False
            for sample in self.samples:
                value = getattr(sample, of).get(partition, 0)
                if value != last_value:
                    if last_value >= 0 and waiting:
                        spans.append((last_at, sample.at))
                    last_value, last_at = value, sample.at
                    produced = sample.produced.get(partition, 0)
                    waiting = of == "produced" or produced > sample.committed.get(partition, 0)
        return spans

    def stall_per_kill(self, kills: list[float], of: str = "committed") -> list[float]:
        """The longest stall overlapping the time from each kill to the next (or the end)."""
        bounds = [*kills[1:], float("inf")]
        return [
            max(
                (end - start for start, end in self.stalls(of) if end > kill and start < until),
                default=0.0,
            )
            for kill, until in zip(kills, bounds, strict=True)
        ]


def wait_fully_replicated(bootstrap: str, timeout: float) -> float:
    """Wait until every partition (the internal topics' too) has all its replicas in sync, so
    that the next kill leaves two of three in sync; how long that took."""
    started = time.monotonic()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        while True:
            try:
                topics = admin.describe_topics()
                lagging = [
                    (t["name"], p["partition_index"])
                    for t in topics
                    for p in t["partitions"]
                    if len(p["isr_nodes"]) < len(p["replica_nodes"])
                ]
            except KafkaError as exc:
                lagging = [("?", repr(exc))]
            if not lagging:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not in sync after {timeout}s: {lagging[:5]}")
            time.sleep(0.5)
    finally:
        admin.close()


def input_records(bootstrap: str, topic: str) -> int:
    """How many records a topic holds: its partitions' end offsets (a test deletes none)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def loud_lines(log: str) -> list[str]:
    """The lines at WARNING or above, and each traceback's lines, of a service's log."""
    lines = log.splitlines()
    return [
        line
        for line in lines
        if LOUD_LINE.match(line) or line.startswith(("Traceback", "  File ", "    "))
    ]


def tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")
