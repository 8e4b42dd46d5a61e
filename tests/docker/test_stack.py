"""docker-compose.yml brought up for real, against the test session's broker.

The containers run on the host's network (tests/docker/compose.host-network.yml: engines here
have no bridge networks), where the broker listens on 127.0.0.1 and the name `broker` is mapped
there. Each stack is a compose project of its own with unique topics and consumer group.
"""

from __future__ import annotations

import json
import os
import sys
import time
from decimal import Decimal
from typing import Any

import pytest
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from kafka import KafkaAdminClient, KafkaConsumer
from tests.broker import Broker, free_port
from tests.docker.conftest import SERVICES, StackFactory
from tests.docker.engine import Compose, docker, healthcheck_passes, inspect, wait_for
from tests.kafka_helpers import Topics, consume, run_command

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RATE = 200  # records/s the generator is asked for
RATE_WINDOW_SECONDS = 10.0
GRACE_SECONDS = {"generator": 15, "detector": 30}  # stop_grace_period in docker-compose.yml


def input_total(bootstrap: str, topic: str) -> int:
    """Records in the topic so far: the sum of its partitions' end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(ends.values()))
    finally:
        consumer.close()


def audit(bootstrap: str, topics: Topics) -> dict[str, Any]:
    """`python -m detector.audit --json`, as an operator runs it; its report."""
    done = run_command(
        [sys.executable, "-m", "detector.audit", "--json", "--timeout", "90"],
        {**os.environ, **topics.env(bootstrap)},
        timeout=150,
    )
    assert done.returncode in (0, 1), f"audit failed ({done.returncode}): {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def settled_audit(bootstrap: str, topics: Topics, timeout: float = 120) -> dict[str, Any]:
    """Audit until nothing is lost (the detector drains what is left), or time is up.
    Duplicated, misrouted and unexpected records are final at once: committed records stay."""
    deadline = time.monotonic() + timeout
    while True:
        report = audit(bootstrap, topics)
        final = report["duplicated"] or report["misrouted"] or report["unexpected"]
        if report["ok"] or final or time.monotonic() > deadline:
            print("audit:", json.dumps({k: v for k, v in report.items() if k != "examples"}))
            return report
        time.sleep(2)


def consumer_group_members(bootstrap: str, group: str) -> list[set[int]]:
    """The partitions assigned to each member of a stable group (an empty set for a member
    without any); no members while the group rebalances."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
    except KafkaError as exc:
        if exc.retriable:  # e.g. no coordinator yet, while the group is being created
            return []
        raise
    finally:
        admin.close()
    if described["error"] or described["group_state"] != "Stable":
        return []
    members = []
    for member in described["members"]:
        assignment = member.get("member_assignment") or {}
        partitions: set[int] = set()
        for assigned in assignment.get("assigned_partitions", []):
            partitions |= set(assigned["partitions"])
        members.append(partitions)
    return members


def exit_codes(stack: Compose, service: str) -> list[int]:
    return [int(inspect(cid)["State"]["ExitCode"]) for cid in stack.container_ids(service)]


def test_the_stack_routes_holds_its_rate_is_healthy_and_stops_cleanly(
    app_stack: StackFactory, broker: Broker, topics: Topics
) -> None:
    stack = app_stack(topics, TRANSACTIONS_PER_SECOND=str(RATE))
    stack.run("up", "--detach", "--no-build", timeout=300)

    # The detector routes: fraud above the threshold, legit up to it.
    fraud: list[Any] = []

    def routed() -> bool:
        nonlocal fraud
        fraud = consume(broker.bootstrap, [topics.fraud], 20, timeout=3)
        return len(fraud) >= 20

    wait_for("20 fraud records routed by the detector container", routed, 180)
    legit = consume(broker.bootstrap, [topics.legit], 20, timeout=30)
    assert len(legit) >= 20
    assert all(json.loads(r.value, parse_float=Decimal)["amount"] > 900 for r in fraud)
    assert all(json.loads(r.value, parse_float=Decimal)["amount"] <= 900 for r in legit)

    # The generator holds its rate (measured on the broker, not taken from its own log).
    first, started = input_total(broker.bootstrap, topics.input), time.monotonic()
    time.sleep(RATE_WINDOW_SECONDS)
    last, elapsed = input_total(broker.bootstrap, topics.input), time.monotonic() - started
    rate = (last - first) / elapsed
    print(f"generator: {rate:.1f} records/s for {RATE}/s asked")
    assert 0.9 * RATE <= rate <= 1.1 * RATE, f"{rate:.1f}/s, asked for {RATE}/s"

    # The healthcheck of each service passes inside its container, as the engine runs it,
    # and the same probe fails there when it asks a port where nothing answers.
    for service in SERVICES:
        (container,) = stack.container_ids(service)
        test = inspect(container)["Config"]["Healthcheck"]["Test"]
        assert test == ["CMD", "python", "-m", "fraudcore.healthcheck"], test
        ok, output = healthcheck_passes(container)
        assert ok, f"{service}: healthcheck failed: {output}"
        wrong = docker(
            "exec",
            "--env",
            f"METRICS_PORT={free_port()}",
            container,
            "python",
            "-m",
            "fraudcore.healthcheck",
            check=False,
        )
        assert wrong.returncode == 1, f"{service}: {wrong.stdout} {wrong.stderr}"
        assert "did not answer" in wrong.stderr

    # `docker compose stop`: both end by themselves (exit 0, not 137 for SIGKILL or 143 for an
    # unhandled SIGTERM) inside their grace periods.
    started = time.monotonic()
    stack.run("stop", timeout=120)
    took = time.monotonic() - started
    print(f"docker compose stop: {took:.1f}s")
    for service in SERVICES:
        assert exit_codes(stack, service) == [0], f"{service}:\n{stack.logs(service)}"
    assert took < max(GRACE_SECONDS.values()), f"stop took {took:.1f}s"

    # The detector drains what the generator sent before it stopped, and the audit is clean:
    # nothing lost, duplicated or misrouted across the stop and the restart.
    stack.run("start", "detector", timeout=120)
    report = settled_audit(broker.bootstrap, topics)
    assert report["ok"], json.dumps(report)
    assert report["counts"]["input"] >= RATE * RATE_WINDOW_SECONDS * 0.9
    started = time.monotonic()
    stack.run("stop", "detector", timeout=120)
    assert exit_codes(stack, "detector") == [0], stack.logs("detector")
    assert time.monotonic() - started < GRACE_SECONDS["detector"]
