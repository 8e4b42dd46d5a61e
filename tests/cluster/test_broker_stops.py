"""A broker stopped on purpose, and the velocity rule's state through a broker's death.

The controlled shutdown (SIGTERM) moves the stopping broker's leaderships away before it goes,
so the detector should hardly notice. The velocity test SIGKILLs a broker while a detector
with the velocity rule works through a preloaded stream, and checks each record's rules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devtools.broker import JarCluster
from kafka import KafkaAdminClient
from tests.cluster.failover import CommitWatch, wait_fully_replicated
from tests.integration.test_faults import FAST_GROUP, assert_exactly_once, settled_audit
from tests.integration.test_velocity import produce_stream
from tests.kafka_helpers import Service, Topics, create_topic, wait_until

# The velocity rule from its settings (no rules file): its window is replayed on each restore.
VELOCITY = {"VELOCITY_MAX_TRANSACTIONS": "20", "VELOCITY_WINDOW_SECONDS": "5"}

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    # The test's own kafka-python clients may leave a socket to a stopped broker unclosed.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

RATE = 500
TOTAL = 15_000
# "A stall of at most a few seconds" for a broker that hands its leaderships over first.
MAX_CONTROLLED_STALL_SECONDS = 5.0


def input_leaders(bootstrap: str, topic: str) -> list[int]:
    """The node ids leading the topic's partitions, most partitions first."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    leaders = [p["leader_id"] for p in described["partitions"]]
    return sorted(set(leaders), key=leaders.count, reverse=True)


def test_controlled_shutdown_of_the_input_leader(
    cluster: JarCluster, cluster_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    env = {
        **topics.env(cluster_bootstrap),
        "TRANSACTIONS_PER_SECOND": str(RATE),
        "TRANSACTIONS_COUNT": str(TOTAL),
        "RANDOM_SEED": "191",
    }
    services: list[Service] = []
    try:
        generator = Service.module("generator", env, tmp_path)
        services.append(generator)
        detector = Service.module("detector", env, tmp_path)
        services.append(detector)
        with CommitWatch(cluster_bootstrap, topics) as watch:
            wait_until(lambda: watch.committed() > 2_000, 60, "the detector under way")
            node = input_leaders(cluster_bootstrap, topics.input)[0]
            stopped_at = time.monotonic()
            cluster.terminate(node)
            print(f"node {node} stopped (SIGTERM) in {time.monotonic() - stopped_at:.1f}s")
            wait_until(lambda: watch.committed() > 8_000, 90, "progress without it")
            cluster.start()
            wait_fully_replicated(cluster_bootstrap, 90)
            wait_until(lambda: watch.committed() >= TOTAL, 120, "every input committed")
        assert generator.wait(30) == 0, generator.output_tail()
        assert detector.stop(30) == 0, detector.output_tail()
        status, report = settled_audit(env)
    finally:
        for service in services:
            service.kill()
    (stall,) = watch.stall_per_kill([stopped_at])
    (input_stall,) = watch.stall_per_kill([stopped_at], "produced")
    print(
        "controlled shutdown:",
        json.dumps({"stall_s": round(stall, 1), "input_stall_s": round(input_stall, 1)}),
    )
    assert_exactly_once(report, TOTAL)
    assert status == 0
    assert stall <= MAX_CONTROLLED_STALL_SECONDS
    assert input_stall <= MAX_CONTROLLED_STALL_SECONDS


def test_velocity_state_survives_a_broker_kill(
    cluster: JarCluster, cluster_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    bootstrap = cluster_bootstrap
    create_topic(bootstrap, topics.input, partitions=3)
    produce_stream(bootstrap, topics.input, seed=29, start=0, count=TOTAL)
    env = {**topics.env(bootstrap), **FAST_GROUP, **VELOCITY, "MAX_POLL_RECORDS": "200"}
    detector = Service.module("detector", env, tmp_path)
    try:
        with CommitWatch(bootstrap, topics) as watch:
            wait_until(lambda: watch.committed() > TOTAL // 4, 90, "a quarter committed")
            node = input_leaders(bootstrap, topics.input)[0]
            cluster.kill(node)
            print(f"node {node} killed at {watch.committed()} of {TOTAL} committed")
            time.sleep(3)
            cluster.start()
            wait_until(lambda: watch.committed() >= TOTAL, 180, "every input committed")
        assert detector.running(), detector.output_tail()
        assert detector.stop(30) == 0, detector.output_tail()
        status, report = settled_audit(env)
    finally:
        detector.kill()
    print("expected fraud by rule:", report["expected_fraud_rules"])
    assert_exactly_once(report, TOTAL)
    assert report["wrong_rules"] == 0, report["examples"]
    assert status == 0
    assert report["expected_fraud_rules"].get("velocity", 0) > TOTAL // 20
