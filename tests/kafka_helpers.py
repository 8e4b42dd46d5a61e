"""Helpers for tests on a real broker: unique names, bounded produce/consume, services."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.broker import REPO_ROOT, run_command
from devtools.procs import Process
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

__all__ = [
    "REPO_ROOT",
    "Service",
    "Topics",
    "consume",
    "create_topic",
    "produce",
    "run_command",
    "unique_name",
    "wait_until",
]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Topics:
    """A unique set of topic and group names, so tests never see each other's records."""

    input: str
    legit: str
    fraud: str
    invalid: str
    group: str

    @classmethod
    def fresh(cls) -> Topics:
        tag = uuid.uuid4().hex[:10]
        return cls(
            input=f"test.{tag}.transactions",
            legit=f"test.{tag}.legit",
            fraud=f"test.{tag}.fraud",
            invalid=f"test.{tag}.invalid",
            group=f"test.{tag}.detector",
        )

    def env(self, bootstrap: str) -> dict[str, str]:
        return {
            "KAFKA_BROKER_URL": bootstrap,
            "TRANSACTIONS_TOPIC": self.input,
            "LEGIT_TOPIC": self.legit,
            "FRAUD_TOPIC": self.fraud,
            "DEAD_LETTER_TOPIC": self.invalid,
            "CONSUMER_GROUP": self.group,
        }


def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": partitions}}, wait_for_metadata=True)
    finally:
        admin.close()


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    headers: list[tuple[str, bytes]] | None = None,
    timestamps: Iterable[int] | None = None,
) -> int:
    """Send (key, value) pairs and wait until all are acknowledged. `timestamps`: each
    record's timestamp (ms), in order; by default the producer's clock."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    stamps = iter(timestamps) if timestamps is not None else None
    count = 0
    try:
        for key, value in records:
            timestamp_ms = None if stamps is None else next(stamps)
            producer.send(
                topic, key=key, value=value, headers=headers or [], timestamp_ms=timestamp_ms
            )
            count += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    return count


def consume(
    bootstrap: str,
    topics: list[str],
    expected: int,
    timeout: float = 60.0,
    settle: float = 0.0,
    *,
    client_options: dict[str, Any] | None = None,
    skip_key: bytes | None = None,
) -> list[Any]:
    """Read committed records from the beginning until `expected` arrived (or time is up).

    With `settle` > 0 it keeps reading that long after reaching `expected`, so that
    duplicates or extra records have a chance to show up and fail the test. `client_options`
    replace the plain bootstrap (e.g. a secure login); records keyed `skip_key` are left out.
    """
    consumer = KafkaConsumer(
        *topics,
        **(client_options or {"bootstrap_servers": bootstrap}),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(r for r in batch if skip_key is None or r.key != skip_key)
            if len(records) >= expected:
                if settle_until is None:
                    settle_until = time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
    finally:
        consumer.close()
    return records


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Service(Process):
    """A generator or detector run as its own process, as a user would run it: with the test
    run's whole environment, stats every second and unbuffered output, then `env` on top."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        full_env = {**os.environ, "STATS_INTERVAL_SECONDS": "1", "PYTHONUNBUFFERED": "1", **env}
        super().__init__(args, full_env, log_path)

    @classmethod
    def module(cls, name: str, env: Mapping[str, str], tmp_path: Path) -> Service:
        log_path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}.log"
        return cls([sys.executable, "-m", name], env, log_path)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as Docker and systemd stop a service; the exit code it gave."""
        return super().stop(timeout)
