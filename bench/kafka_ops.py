"""Small Kafka operations the bench needs: topics, offsets, timestamps, progress, records."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import OffsetSpec
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from kafka import KafkaAdminClient, KafkaConsumer

LOG_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def run_tag() -> str:
    return uuid.uuid4().hex[:8]


@contextmanager
def admin_client(bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        yield admin
    finally:
        admin.close()


def create_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    configs: dict[str, str] | None = None,
) -> None:
    with admin_client(bootstrap) as admin:
        admin.create_topics(
            {name: {"num_partitions": partitions, "configs": configs or {}} for name in names},
            wait_for_metadata=True,
        )


def partitions_of(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(count)]


def end_offsets(admin: KafkaAdminClient, topics: list[str], partitions: int) -> int:
    """The sum of the log-end offsets: the record count of a topic no transaction wrote to."""
    specs = {tp: OffsetSpec.LATEST for topic in topics for tp in partitions_of(topic, partitions)}
    return sum(o.offset for o in admin.list_partition_offsets(specs).values())


def committed(admin: KafkaAdminClient, group: str) -> int:
    """The sum of a group's committed offsets (0 before its first commit, or while the group
    coordinator is not there yet, as on a new broker before __consumer_offsets exists)."""
    try:
        offsets = admin.list_group_offsets([group]).get(group, {})
    except KafkaError as exc:
        if not getattr(exc, "retriable", False):
            raise
        return 0
    return sum(o.offset for o in offsets.values() if o.offset > 0)


def timestamp_span(bootstrap: str, topic: str, partitions: int) -> tuple[int, int, int]:
    """(record count, smallest timestamp, largest timestamp) of a topic no transaction wrote to.

    Within a partition the timestamps only grow (CreateTime of one producer, or LogAppendTime),
    so the first and the last record of each partition are enough.
    """
    tps = partitions_of(topic, partitions)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        firsts = consumer.beginning_offsets(tps)
        count = sum(ends[tp] - firsts[tp] for tp in tps)
        stamps: list[int] = []
        for tp in tps:
            if ends[tp] > firsts[tp]:
                stamps.append(_timestamp_at(consumer, tp, firsts[tp]))
                stamps.append(_timestamp_at(consumer, tp, ends[tp] - 1))
    finally:
        consumer.close()
    if not stamps:
        raise RuntimeError(f"topic {topic} is empty")
    return count, min(stamps), max(stamps)


def _timestamp_at(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> int:
    others = [p for p in consumer.assignment() if p != tp]
    consumer.pause(*others)
    try:
        consumer.resume(tp)
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500, max_records=1).get(tp, []):
                if record.offset == offset:
                    return int(record.timestamp)
                raise RuntimeError(f"expected offset {offset} of {tp}, got {record.offset}")
    finally:
        consumer.resume(*others)
    raise RuntimeError(f"could not read offset {offset} of {tp}")


def wait_for_group(
    admin: KafkaAdminClient, group: str, partitions: int, timeout: float, members: int = 1
) -> None:
    """Until the group is Stable with at least `members` members, and they hold every
    partition (or raise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            described = admin.describe_groups([group]).get(group, {})
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                raise
            described = {}
        if (
            described.get("group_state") == "Stable"
            and len(described.get("members", [])) >= members
        ):
            held = sum(
                len(assigned["partitions"])
                for member in described.get("members", [])
                for assigned in member["member_assignment"]["assigned_partitions"]
            )
            if held >= partitions:
                return
        time.sleep(0.1)
    raise RuntimeError(f"group {group} did not become stable within {timeout:g}s")


def encoded_transactions(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """`count` (key, value) pairs exactly as the generator encodes them, made up front."""
    factory = TransactionFactory(seed)
    out = []
    for _ in range(count):
        tx = factory.next()
        out.append((encode_key(tx), encode(tx)))
    return out


@dataclass
class Progress:
    """(seconds since watch start, counter value, process CPU seconds) samples up to a target."""

    target: int
    samples: list[tuple[float, int, float | None]] = field(default_factory=list)
    finished: bool = False

    def _first_moving(self) -> tuple[float, int, float | None]:
        """The first sample above 0: processing is known to have started. When that sample is
        already the target (one commit held the whole input: a short run), the first sample,
        so that the span is not empty; from_start() tells."""
        start = next((s for s in self.samples if s[1] > 0), None)
        if start is None or not self.finished:
            raise RuntimeError(f"no measurable progress: {self.samples[-3:]} of {self.target}")
        return self.samples[0] if start[1] >= self.target else start

    def from_start(self) -> bool:
        """Whether the span starts at the first sample (start-up included), not at progress."""
        return self._first_moving() is self.samples[0]

    def seconds(self) -> float:
        return self.samples[-1][0] - self._first_moving()[0]

    def rate(self) -> float:
        """Records per second from the first moving sample to the one reaching the target."""
        start = self._first_moving()
        return (self.target - start[1]) / max(self.samples[-1][0] - start[0], 1e-9)

    def cpu_per_record_us(self) -> float | None:
        """The process's CPU time per record, in microseconds, from the last sample before any
        progress to the end: every record's work is inside the span. (From the first moving
        sample, a fast short run had its work done between two samples: a CPU difference below
        the clock's tick, read as 0.) When one commit held the whole input, the work can also
        precede that last sample, the commit alone filling the interval (waiting, not
        computing): the span then starts at the latest earlier sample that shows CPU used."""
        self._first_moving()  # raises if there was no measurable progress
        moving = next(i for i, s in enumerate(self.samples) if s[1] > 0)
        end = self.samples[-1]
        if end[2] is None:
            return None
        for start in reversed(self.samples[: max(moving, 1)]):
            if start[2] is None or end[1] <= start[1]:
                return None
            if end[2] > start[2]:
                return 1e6 * (end[2] - start[2]) / (end[1] - start[1])
        return None


def watch(
    read: Callable[[], int],
    target: int,
    timeout: float,
    alive: Callable[[], bool],
    *,
    cpu: Callable[[], float | None] = lambda: None,
    interval: float = 0.05,
    stall: float = 60.0,
) -> Progress:
    """Sample `read()` until it reaches `target`, the process dies, the time is up, or the
    value has not moved for `stall` seconds (start-up included)."""
    progress = Progress(target)
    start = time.monotonic()
    moved_at, last = 0.0, -1
    while True:
        value = read()
        now = time.monotonic() - start
        progress.samples.append((now, value, cpu()))
        if value >= target:
            progress.finished = True
            return progress
        if value != last:
            moved_at, last = now, value
        if now > timeout or now - moved_at > stall or not alive():
            return progress
        time.sleep(interval)


def record_id(value: bytes | None) -> str | None:
    """The transaction id of a value the generator wrote, without parsing the JSON."""
    if value and value.startswith(b'{"id":"') and value[43:44] == b'"':
        return value[7:43].decode()
    return None


def summarize(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}

    def pct(p: float) -> float:  # nearest rank
        return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]

    return {
        "count": len(ordered),
        "p50": pct(50),
        "p95": pct(95),
        "p99": pct(99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }
