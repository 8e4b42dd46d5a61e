"""Every rule type on the real broker (RULES_FILE): their exactly-once state, the windows
replayed from the input and the spikes read back from their changelog, through SIGKILLs and a
rebalance, checked record by record (topic and fraud.rules) against the audit's recomputation
with the same rules file.

The input is made so that each rule decides often both ways: a small pool of accounts, record
timestamps set by the test (a steady stream time with some records out of order), and invalid
records from the hottest accounts among them.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from kafka import KafkaAdminClient
from tests.integration.test_faults import (
    FAST_GROUP,
    FEED_CHUNK,
    assert_exactly_once,
    assigned,
    committed_total,
    kill_mid_stream,
    settled_audit,
)
from tests.kafka_helpers import Service, Topics, create_topic, produce, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRELOADED = 20_000
LATER = 10_000  # produced once the second detector has joined: processed across the rebalance
RULES = """rules:
  - {name: amount, type: amount_above, threshold: 900}
  - {name: velocity, type: count_in_window, max_transactions: 20, window_seconds: 5}
  - {name: spike, type: amount_spike, history: 20, min_history: 5, z: 1.2}
  - {name: daily_total, type: sum_in_window, max_amount: 10000, window_seconds: 5}
"""
ACCOUNTS = 50
STEP_MS = 5  # stream time: 200 records/s, so about 4 per account and second
# An hour ago: the broker refuses timestamps more than an hour ahead of its clock.
T0 = (time.time_ns() // 1_000_000) - 3_600_000
RESTORED = re.compile(r"restored the windows of \S+: offsets (\d+) to (\d+) read")
CHANGELOG_READ = re.compile(r"restored the changelog state of \S+: (\d+) records read")


def records(seed: int, start: int, count: int) -> Iterator[tuple[bytes, bytes, int]]:
    """Unique transactions of ACCOUNTS accounts; every 101st an invalid record of an account
    that is busy right then; timestamps STEP_MS apart, one in ten up to 2 s early."""
    rng = random.Random(seed)
    factory = TransactionFactory(seed=seed, account_pool_size=ACCOUNTS)
    for n in range(start, start + count):
        tx = factory.next()
        timestamp = T0 + n * STEP_MS - (rng.randrange(2000) if rng.random() < 0.1 else 0)
        value = b'{"source": "%s", "amount": "n/a"}' % tx.source.encode()
        yield encode_key(tx), (value if n % 101 == 0 else encode(tx)), timestamp


def produce_stream(bootstrap: str, topic: str, seed: int, start: int, count: int) -> None:
    stream = list(records(seed, start, count))
    sent = produce(
        bootstrap, topic, ((k, v) for k, v, _ in stream), timestamps=(t for *_, t in stream)
    )
    assert sent == count


def restores(services: list[Service]) -> list[tuple[int, int]]:
    """Every window restore the detectors logged: (from, to) offsets replayed."""
    return [(int(a), int(b)) for s in services for a, b in RESTORED.findall(s.output())]


def changelog_reads(services: list[Service]) -> list[int]:
    return [int(n) for s in services for n in CHANGELOG_READ.findall(s.output())]


def test_every_rules_state_survives_sigkills_and_a_rebalance_exactly_once(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient
) -> None:
    create_topic(bootstrap, topics.input, partitions=3)
    produce_stream(bootstrap, topics.input, seed=13, start=0, count=PRELOADED)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    env = {
        **topics.env(bootstrap),
        **FAST_GROUP,
        "RULES_FILE": str(rules_file),
        "MAX_POLL_RECORDS": "200",
    }
    # The restarts, and then the first of two detectors, share one id: each fences the last.
    restarted = {**env, "TRANSACTIONAL_ID": f"v-{topics.group}-0"}

    def feed(chunk: int) -> int:  # the same stream, continued
        start = PRELOADED + chunk * FEED_CHUNK
        produce_stream(bootstrap, topics.input, seed=13, start=start, count=FEED_CHUNK)
        return FEED_CHUNK

    services, preloaded = kill_mid_stream(
        admin,
        topics,
        restarted,
        tmp_path,
        seed=13,
        transactional=True,
        preloaded=PRELOADED,
        feed=feed,
    )
    try:
        first = Service.module("detector", restarted, tmp_path)
        services.append(first)
        wait_until(lambda: assigned(first) == {0, 1, 2}, 60, "the first detector's partitions")
        second = Service.module("detector", env, tmp_path)
        services.append(second)

        def split() -> bool:
            assert first.running(), first.output()
            assert second.running(), second.output()
            mine, theirs = assigned(first), assigned(second)
            return bool(mine) and bool(theirs) and mine | theirs == {0, 1, 2}

        wait_until(split, 60, "the rebalance to split the partitions")
        produce_stream(bootstrap, topics.input, seed=13, start=preloaded, count=LATER)
        total = preloaded + LATER
        wait_until(
            lambda: committed_total(admin, topics) == total, 120, "every input committed", 0.2
        )
        status, report = settled_audit(env)
        for service in (first, second):
            assert service.running(), service.output()
            assert service.stop() == 0, service.output()
    finally:
        for service in services:
            service.kill()
    replayed = restores(services)
    print(f"window restores (from, to): {replayed}")
    print(f"changelog records read by each restore: {changelog_reads(services)}")
    print("expected fraud by rule:", report["expected_fraud_rules"])
    assert_exactly_once(report, total)
    assert report["wrong_rules"] == 0, report["examples"]
    assert status == 0
    by_rule = report["expected_fraud_rules"]
    for rule in ("amount", "velocity", "spike", "daily_total"):  # each rule decided often
        fired = sum(n for rules, n in by_rule.items() if rule in rules.split(","))
        assert total // 50 < fired < total * 3 // 4, (rule, by_rule)
    assert any(end > start for start, end in replayed), "no restore replayed any input"
    assert any(read > 0 for read in changelog_reads(services)), "no changelog was read back"
