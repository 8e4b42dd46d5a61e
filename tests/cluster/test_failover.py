"""Brokers die under a running stack: nothing is lost or doubled, and the stall stays short.

The round-robin test is the operator's experiment: three nodes, the generator at 500/s, one
detector, and one broker at a time SIGKILLed and started again, so that two of three are always
up. The generator runs until the last node is back and the stack has run on the whole cluster
for a while, however long the nodes take to restart, so that every kill meets a running stack.
It measures how long the committed offsets stand still per kill (tests/cluster/failover.py)
and counts the detector's WARNING+ lines; the audit checks every record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devtools.broker import JarCluster
from tests.cluster.failover import (
    CommitWatch,
    input_records,
    loud_lines,
    tracebacks,
    wait_fully_replicated,
)
from tests.integration.test_faults import assert_exactly_once, settled_audit
from tests.kafka_helpers import Service, Topics, wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    # The test's own kafka-python clients (the watch, the audit) leave a socket to a killed
    # broker unclosed now and then; that is the library's, not the services'.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

RATE = 500
FIRST_KILL_AFTER = 8.0
KILL_EVERY = 15.0
DOWN_SECONDS = 3.0
KILLS = 4
# Input after the last node is back: the stack runs on the whole cluster again before it ends.
RUN_AFTER_LAST_KILL = 10.0
# The target: with two of three brokers up, committed offsets never stand still longer.
MAX_STALL_SECONDS = 15.0
# What a failover may cost in the detector's log, at WARNING or above.
MAX_LOUD_LINES_PER_KILL = 6


def stack_env(bootstrap: str, topics: Topics, guarantee: str) -> dict[str, str]:
    return {
        **topics.env(bootstrap),
        "PROCESSING_GUARANTEE": guarantee,
        "TRANSACTIONS_PER_SECOND": str(RATE),
        "RANDOM_SEED": "19",
    }


def round_robin_kills(cluster: JarCluster, started: float) -> list[float]:
    """SIGKILL node 1, 2, 3, 1, ...; each comes back DOWN_SECONDS later. When each died."""
    kills: list[float] = []
    for kill in range(KILLS):
        time.sleep(max(0.0, started + FIRST_KILL_AFTER + kill * KILL_EVERY - time.monotonic()))
        node = kill % cluster.nodes + 1
        kills.append(time.monotonic())
        cluster.kill(node)
        print(f"kill {kill + 1}: node {node} at {kills[-1] - started:.1f}s")
        time.sleep(DOWN_SECONDS)
        cluster.start()
        back = time.monotonic() - started
        synced = wait_fully_replicated(cluster.bootstrap, 90)
        print(f"  node {node} back at {back:.1f}s, every replica in sync {synced:.1f}s later")
    return kills


@pytest.mark.timeout(600)
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_round_robin_broker_kills(
    cluster: JarCluster, cluster_bootstrap: str, topics: Topics, tmp_path: Path, guarantee: str
) -> None:
    env = stack_env(cluster_bootstrap, topics, guarantee)
    services: list[Service] = []
    try:
        generator = Service.module("generator", env, tmp_path)
        services.append(generator)
        detector = Service.module("detector", env, tmp_path)
        services.append(detector)
        with CommitWatch(cluster_bootstrap, topics) as watch:
            wait_until(lambda: watch.committed() > 0, 60, "the first commit")
            kills = round_robin_kills(cluster, time.monotonic())
            time.sleep(RUN_AFTER_LAST_KILL)
            assert generator.stop(30) == 0, generator.output_tail()
            total = input_records(cluster_bootstrap, topics.input)
            try:
                wait_until(lambda: watch.committed() >= total, 180, "every input committed")
            except AssertionError as exc:
                detail = f"{exc}: {watch.describe()}\n{detector.output_tail()}"
                raise AssertionError(detail) from exc
        assert detector.running(), detector.output_tail()
        assert detector.stop(30) == 0, detector.output_tail()
        status, report = settled_audit(env)
    finally:
        for service in services:
            service.kill()
    stalls = watch.stall_per_kill(kills)
    input_stalls = watch.stall_per_kill(kills, "produced")
    log = detector.output()
    loud = loud_lines(log)
    figures = {
        "guarantee": guarantee,
        "records": total,
        "committed_stall_per_kill_s": [round(s, 1) for s in stalls],
        "input_stall_per_kill_s": [round(s, 1) for s in input_stalls],
        "detector_warning_lines": len(loud),
        "generator_warning_lines": len(loud_lines(generator.output())),
        "tracebacks": tracebacks(log) + tracebacks(generator.output()),
        "failed_samples": watch.failed_samples,
    }
    print("failover:", json.dumps(figures))
    print("\n".join(loud[:80]))
    # The detector saw the cluster and gave its transactions room for a failover.
    assert f"a cluster of {cluster.nodes} brokers" in log, log[:3000]
    assert report["lost"] == 0, report["examples"]
    if guarantee == "exactly_once":
        assert_exactly_once(report, total)
        assert status == 0
    assert max(stalls) <= MAX_STALL_SECONDS, figures
    assert max(input_stalls) <= MAX_STALL_SECONDS, figures
    assert figures["tracebacks"] == 0, figures
    assert len(loud) <= MAX_LOUD_LINES_PER_KILL * KILLS, figures
