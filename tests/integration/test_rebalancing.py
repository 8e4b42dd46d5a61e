"""Rebalancing on the real broker: what a detector joining the group costs in restores.

Two detectors with the velocity rule on share a 6-partition input and have committed all of it
(so every partition has a rules checkpoint to restore from); a third joins, more input arrives
and is processed. Each restore a detector logs ("restored the windows of <partition>") is
counted by detector and partition. With cooperative (incremental) assignment only the partitions
that move restore; with eager assignment every partition is revoked and restored. The client and
its assignment are set per detector, so the test runs whatever KAFKA_CLIENT the session has; each
names its KAFKA_GROUP_PROTOCOL too, so that a session run with KAFKA_GROUP_PROTOCOL=consumer (for
the fault tests) leaves the classic variants classic.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from kafka import KafkaAdminClient
from tests.integration.test_faults import (
    FAST_GROUP,
    OutputEnds,
    assert_exactly_once,
    assigned,
    committed,
    committed_total,
    produce_unique,
    settled_audit,
)
from tests.kafka_helpers import Service, Topics, create_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 6
ALL = set(range(PARTITIONS))
FIRST = 6_000  # produced once the two first detectors share the input
LATER = 3_000  # produced once the third detector has its partitions
VELOCITY = {"VELOCITY_MAX_TRANSACTIONS": "5", "VELOCITY_WINDOW_SECONDS": "60"}
RESTORED_PARTITION = re.compile(r"restored the windows of \S+-(\d+): offsets \d+ to \d+ read")

CLASSIC = {"KAFKA_GROUP_PROTOCOL": "classic"}
COOPERATIVE = {
    "confluent cooperative": {
        "KAFKA_CLIENT": "confluent",
        "KAFKA_ASSIGNMENT": "cooperative",
        **CLASSIC,
    },
    # KIP-848: the broker assigns, incrementally; the same restores are expected.
    "confluent consumer-protocol": {
        "KAFKA_CLIENT": "confluent",
        "KAFKA_GROUP_PROTOCOL": "consumer",
    },
}
EAGER = {
    "kafka-python": {"KAFKA_CLIENT": "kafka-python", **CLASSIC},
    "confluent eager": {"KAFKA_CLIENT": "confluent", "KAFKA_ASSIGNMENT": "eager", **CLASSIC},
}


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.MULTILINE)


def join_seconds(service: Service) -> float:
    """From the detector's "connected to Kafka broker" line to its first non-empty assignment:
    the group's own part of a join (process start-up and topic checks left out)."""
    connected = assigned_at = None
    for line in service.output().splitlines():
        found = LOG_TIME.match(line)
        if found is None:
            continue
        stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if connected is None and "connected to Kafka broker" in line:
            connected = stamp
        elif connected is not None and "assigned partitions: ['" in line:
            assigned_at = stamp
            break
    assert connected is not None, service.output()
    assert assigned_at is not None, service.output()
    return (assigned_at - connected).total_seconds()


def restored(service: Service, since: int = 0) -> list[int]:
    """The partitions whose windows `service` restored, in order, in its output from `since`."""
    return [int(p) for p in RESTORED_PARTITION.findall(service.output()[since:])]


@dataclass
class ScaleOut:
    """What the two first detectors owned before the third joined, what each of the three owns
    after, the partitions each restored because of the join, and how long the join took."""

    before: list[set[int]]
    after: list[set[int]]
    restores: list[list[int]]
    rebalance_seconds: float
    join_seconds: float

    def moved(self) -> set[int]:
        return set().union(*(old - new for old, new in zip(self.before, self.after, strict=False)))

    def summary(self, name: str) -> str:
        counts = [len(r) for r in self.restores]
        return (
            f"{name}: before {[sorted(s) for s in self.before]}, "
            f"after {[sorted(s) for s in self.after]}, moved {sorted(self.moved())}; "
            f"restores per detector {counts} (total {sum(counts)}): "
            f"{[sorted(r) for r in self.restores]}; rebalance took {self.rebalance_seconds:.1f}s "
            f"(the third: {self.join_seconds:.1f}s from connected to its partitions)"
        )


def scale_two_to_three(
    bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    admin: KafkaAdminClient,
    client: dict[str, str],
) -> ScaleOut:
    """Run the scale-out with every detector on `client`; the audit must be clean after it."""
    create_topic(bootstrap, topics.input, PARTITIONS)
    env = {
        **topics.env(bootstrap),
        **FAST_GROUP,
        **VELOCITY,
        **client,
        "TRANSACTIONS_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    services: list[Service] = []

    def start() -> Service:
        service = Service.module("detector", env, tmp_path)
        services.append(service)
        return service

    def owners_cover_all(detectors: list[Service]) -> bool:
        for detector in detectors:
            assert detector.running(), detector.output()
        owned = [assigned(d) for d in detectors]
        return all(owned) and sum(map(len, owned)) == PARTITIONS and set().union(*owned) == ALL

    try:
        pair = [start(), start()]
        wait_until(lambda: owners_cover_all(pair), 90, "the two detectors to share the input")
        # Produced once they share it: then all of it committed means each detector has taken
        # its partitions for good, so the restores counted below are the join's.
        produce_unique(bootstrap, topics.input, FIRST, seed=18)

        def all_committed(expected: int) -> bool:
            for detector in services:
                assert detector.running(), detector.output()
            offsets = committed(admin, topics)
            return sum(offsets.values()) == expected and all(offsets.get(p) for p in ALL)

        wait_until(lambda: all_committed(FIRST), 120, "the first input committed", 0.2)
        before = [assigned(d) for d in pair]
        marks = [len(d.output()) for d in pair]
        joined = time.monotonic()
        third = start()
        trio = [*pair, third]
        wait_until(lambda: owners_cover_all(trio), 90, "the three detectors to share the input")
        rebalance_seconds = time.monotonic() - joined
        produce_unique(bootstrap, topics.input, LATER, seed=19)
        wait_until(lambda: all_committed(FIRST + LATER), 120, "the later input committed", 0.2)
        after = [assigned(d) for d in trio]
        restores = [restored(d, since) for d, since in zip(trio, [*marks, 0], strict=True)]
        status, report = settled_audit(env)
        for detector in trio:
            assert detector.running(), detector.output()
            assert detector.stop() == 0, detector.output()
    finally:
        for service in services:
            service.kill()
    assert_exactly_once(report, FIRST + LATER)
    assert status == 0
    return ScaleOut(before, after, restores, rebalance_seconds, join_seconds(third))


@pytest.mark.parametrize("client", COOPERATIVE.values(), ids=COOPERATIVE.keys())
def test_a_joining_detector_restores_only_the_partitions_that_move(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient, client: dict[str, str]
) -> None:
    """Cooperative: the two running detectors keep what they keep without restoring it, give up
    only the partitions the third takes, and the third restores exactly those."""
    scale = scale_two_to_three(bootstrap, topics, tmp_path, admin, client)
    print(scale.summary(" ".join(client.values())))
    third = scale.after[2]
    for old, new in zip(scale.before, scale.after, strict=False):
        assert new <= old, scale.summary("a running detector was given a partition")
    assert third == scale.moved(), scale.summary("the third took what was not given up")
    assert [len(owned) for owned in scale.after] == [2, 2, 2], scale.summary("unbalanced")
    assert scale.restores[0] == [], scale.summary("the first detector restored")
    assert scale.restores[1] == [], scale.summary("the second detector restored")
    assert sorted(scale.restores[2]) == sorted(third), scale.summary("the third's restores")


@pytest.mark.parametrize("client", EAGER.values(), ids=EAGER.keys())
def test_with_eager_assignment_a_joining_detector_makes_every_partition_restore(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient, client: dict[str, str]
) -> None:
    """Eager, the comparison: every partition is revoked, so each detector restores every
    partition it owns after the join, the ones it kept as well."""
    scale = scale_two_to_three(bootstrap, topics, tmp_path, admin, client)
    print(scale.summary(" ".join(client.values())))
    assert all(scale.after), scale.summary("a detector owns nothing")
    for owned, restores in zip(scale.after, scale.restores, strict=True):
        assert owned <= set(restores), scale.summary("a partition kept its state unrestored")
    assert sum(map(len, scale.restores)) >= PARTITIONS


MIXED = {
    "kafka-python": {"KAFKA_CLIENT": "kafka-python", **CLASSIC},
    # kafka-python has no cooperative assignor: a group shared with it needs eager on confluent.
    "confluent": {"KAFKA_CLIENT": "confluent", "KAFKA_ASSIGNMENT": "eager", **CLASSIC},
}
MIXED_TOTAL = 20_000


@pytest.mark.parametrize("killed", MIXED.keys())
def test_a_mixed_group_survives_either_client_killed_exactly_once(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient, killed: str
) -> None:
    """A kafka-python and a confluent detector share one group, as while a deployment rolls
    from one client to the other; one is SIGKILLed mid-stream, in a transaction, and the other
    takes its partitions over: every input once, in the right topic."""
    create_topic(bootstrap, topics.input, PARTITIONS)
    env = {
        **topics.env(bootstrap),
        **FAST_GROUP,
        "TRANSACTIONS_TOPIC_PARTITIONS": str(PARTITIONS),
        "TRANSACTION_TIMEOUT_MS": "5000",
    }
    detectors = {
        name: Service.module("detector", {**env, **client}, tmp_path)
        for name, client in MIXED.items()
    }
    victim = detectors[killed]
    (survivor,) = (d for name, d in detectors.items() if name != killed)
    ends = OutputEnds(bootstrap, topics)
    try:

        def split_between_both() -> bool:
            for detector in detectors.values():
                assert detector.running(), detector.output()
            mine, theirs = (assigned(d) for d in detectors.values())
            return bool(mine) and bool(theirs) and mine.isdisjoint(theirs) and mine | theirs == ALL

        wait_until(split_between_both, 90, "the two clients' detectors to share the input")
        print("split:", {name: sorted(assigned(d)) for name, d in detectors.items()})
        with ThreadPoolExecutor(max_workers=1) as pool:
            producing = pool.submit(produce_unique, bootstrap, topics.input, MIXED_TOTAL, 20)

            def both_committed() -> bool:
                now = committed(admin, topics)
                return sum(now.values()) > 2000 and all(now.get(p) for p in ALL)

            wait_until(both_committed, 60, "both detectors to commit", interval=0.05)
            wait_until(ends.open_transaction, 30, "an open transaction", interval=0.005)
            victim.kill()
            at_kill = committed_total(admin, topics)
            producing.result(timeout=120)
        print(f"SIGKILL of the {killed} detector with {at_kill} of {MIXED_TOTAL} committed")
        assert at_kill < MIXED_TOTAL, "the stream ended before the kill; produce more records"

        def taken_over() -> bool:
            assert survivor.running(), survivor.output()
            return assigned(survivor) == ALL and committed_total(admin, topics) == MIXED_TOTAL

        wait_until(taken_over, 120, "the survivor to take over and commit every input", 0.2)
        status, report = settled_audit(env)
        assert survivor.running(), survivor.output()
        assert survivor.stop() == 0, survivor.output()
    finally:
        ends.close()
        for detector in detectors.values():
            detector.kill()
    assert_exactly_once(report, MIXED_TOTAL)
    assert status == 0


COOPERATIVE_CONFLUENT = COOPERATIVE["confluent cooperative"]
REFUSED_ORDERS = {
    "confluent cooperative joins kafka-python": (MIXED["kafka-python"], COOPERATIVE_CONFLUENT),
    "kafka-python joins confluent cooperative": (COOPERATIVE_CONFLUENT, MIXED["kafka-python"]),
}


@pytest.mark.parametrize(
    ("first_client", "joining_client"), REFUSED_ORDERS.values(), ids=REFUSED_ORDERS
)
def test_a_detector_whose_assignment_the_group_does_not_share_stops_with_one_clear_line(
    bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    first_client: dict[str, str],
    joining_client: dict[str, str],
) -> None:
    """kafka-python has only eager assignors, so the broker refuses a member that offers only
    cooperative next to one that offers only eager (and the other way round). The refused
    detector stops with status 1 and one line that says what to set; the group goes on."""
    create_topic(bootstrap, topics.input, PARTITIONS)
    env = {**topics.env(bootstrap), **FAST_GROUP, "TRANSACTIONS_TOPIC_PARTITIONS": str(PARTITIONS)}
    first = Service.module("detector", {**env, **first_client}, tmp_path)
    joining: Service | None = None
    try:
        wait_until(lambda: assigned(first) == ALL, 60, "the first detector's partitions")
        joining = Service.module("detector", {**env, **joining_client}, tmp_path)
        code = joining.wait(60)
        output = joining.output()
        print(output)
        # The detector's own line; the client library may log the refusal on its own logger.
        errors = [
            line
            for line in output.splitlines()
            if " ERROR " in line and " kafka." not in line and " confluent_kafka" not in line
        ]
        assert code == 1, output
        assert "Traceback" not in output
        assert len(errors) == 1, output
        assert "partition assignment" in errors[0], errors
        assert "KAFKA_ASSIGNMENT=eager" in errors[0], errors
        time.sleep(1)
        assert first.running(), first.output()
        assert assigned(first) == ALL
        assert first.stop() == 0, first.output()
    finally:
        first.kill()
        if joining is not None:
            joining.kill()
