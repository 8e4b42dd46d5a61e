"""`docker compose up --scale detector=3`: exactly-once across containers.

The three replicas share the host's network namespace here, so they share a host name, and
each may run as the same pid: nothing about them is unique but what the detector makes so
(its default transactional id, issue "exactly_once loses records when two detectors share a
transactional id"). On one network namespace they cannot share a metrics port either: the
replicas run with DETECTOR_METRICS_PORT=0, no /metrics and no /health (README "Scaling and
metrics").
"""

from __future__ import annotations

import json
import time

import pytest

from tests.broker import Broker
from tests.docker.conftest import StackFactory
from tests.docker.engine import HERE, app_stack_files, docker, inspect, wait_for
from tests.docker.test_stack import consumer_group_members, exit_codes, settled_audit
from tests.kafka_helpers import Topics, consume

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPLICAS = 3
RATE = 300
SCALE_OVERRIDE = HERE / "compose.scale.yml"


def test_three_detectors_share_the_partitions_and_a_kill_loses_nothing(
    app_stack: StackFactory, broker: Broker, topics: Topics
) -> None:
    stack = app_stack(topics, TRANSACTIONS_PER_SECOND=str(RATE), DETECTOR_METRICS_PORT="0")
    stack.files = [*app_stack_files(), SCALE_OVERRIDE]
    stack.run("up", "--detach", "--no-build", "--scale", f"detector={REPLICAS}", timeout=300)

    def shared() -> list[set[int]] | None:
        members = consumer_group_members(broker.bootstrap, topics.group)
        if len(members) != REPLICAS or any(len(p) != 1 for p in members):
            return None
        return members

    members = wait_for(f"{REPLICAS} detectors with one partition each", shared, 180, 2)
    assert set().union(*members) == {0, 1, 2}, members
    detectors = stack.container_ids("detector")
    assert len(detectors) == REPLICAS
    wait_for(
        "records routed by the replicas",
        lambda: len(consume(broker.bootstrap, [topics.fraud], 30, timeout=3)) >= 30,
        120,
    )

    # Under load, one replica is killed outright, mid-transaction as likely as not.
    victim = detectors[0]
    docker("kill", victim, timeout=60)
    print(f"killed {victim[:12]} ({inspect(victim)['State']['Status']} after the kill)")
    time.sleep(10)  # the generator keeps sending; the group moves the victim's partition

    def covered() -> bool:
        owned = consumer_group_members(broker.bootstrap, topics.group)
        return set().union(set(), *owned) == {0, 1, 2}

    wait_for("the partitions owned again after the kill", covered, 120, 2)
    stack.run("stop", "generator", timeout=120)
    assert exit_codes(stack, "generator") == [0]

    report = settled_audit(broker.bootstrap, topics, timeout=180)
    assert report["counts"]["input"] > RATE * 10
    assert (report["lost"], report["duplicated"]) == (0, 0), json.dumps(report)
    assert report["ok"], json.dumps(report)

    # Replicas that shared a transactional id would fence each other and restart.
    logs = stack.logs("detector", tail=100000)
    assert "fenced by a newer producer" not in logs, logs[-4000:]
    running = [c for c in stack.container_ids("detector") if inspect(c)["State"]["Running"]]
    assert len(running) == REPLICAS - 1, "the killed replica is the only one down"
    for container in running:
        assert inspect(container)["RestartCount"] == 0, f"{container[:12]} restarted"
    stack.run("stop", "detector", timeout=120)
    for container in running:
        assert inspect(container)["State"]["ExitCode"] == 0, stack.logs("detector")
