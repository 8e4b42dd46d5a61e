"""The backtest on a real broker: it gives every record the verdict the live detector gave it,
and each way it cannot run is one line with its own exit code."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detector import backtest
from fraudcore.core.rule import HEADER_RULES, Classification
from fraudcore.core.rules.file import load_rules
from tests.kafka_helpers import Service, Topics, consume, create_topic, produce, run_command

pytestmark = pytest.mark.integration

RULES = """rules:
  - {name: amount, type: amount_above, threshold: 900}
  - {name: velocity, type: count_in_window, max_transactions: 5, window_seconds: 2}
"""
ACCOUNTS = [f"AC{n:04d}" for n in range(30)]
STEP_MS = 50
# An hour ago: the broker refuses timestamps more than an hour ahead of its clock.
T0 = (time.time_ns() // 1_000_000) - 3_600_000

Segment = tuple[str | None, list[tuple[bytes, bytes, int]]]


def _value(tx_id: str, source: str, amount: float | str) -> bytes:
    amount_text = json.dumps(amount)
    return (
        f'{{"id": "{tx_id}", "source": "{source}", "target": "XY98ZW", '
        f'"amount": {amount_text}, "currency": "EUR"}}'
    ).encode()


def stream() -> list[Segment]:
    """Normal traffic with labelled scenarios between its stretches: velocity bursts (8 in
    0.4 s from one account), big tickets, card testing, and invalid records."""
    rng = random.Random(23)
    clock = T0
    n = 0
    segments: list[Segment] = []

    def tx(label: str | None, source: str, amount: float | str, step: int = STEP_MS) -> None:
        nonlocal clock, n
        clock += step
        n += 1
        if not segments or segments[-1][0] != label:
            segments.append((label, []))
        segments[-1][1].append((source.encode(), _value(f"tx-{n}", source, amount), clock))

    for stretch in range(6):
        for _ in range(150):
            tx(None, rng.choice(ACCOUNTS), round(rng.uniform(1, 1000), 2))
        burst = ACCOUNTS[stretch]
        for _ in range(8):
            tx("velocity_burst", burst, 25.0, step=50)
        tx("big_ticket", rng.choice(ACCOUNTS), 4000.0)
        for _ in range(4):
            tx("card_testing", ACCOUNTS[-1 - stretch], 0.5)
        tx(None, rng.choice(ACCOUNTS), "n/a")  # invalid: a dead letter
    return segments


def produce_stream(bootstrap: str, topic: str, segments: list[Segment]) -> int:
    sent = 0
    for label, records in segments:
        headers = [] if label is None else [(backtest.HEADER_LABEL, label.encode())]
        sent += produce(
            bootstrap,
            topic,
            ((k, v) for k, v, _ in records),
            headers,
            timestamps=(t for *_, t in records),
        )
    return sent


def run_backtest(
    topics: Topics, bootstrap: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_command(
        [sys.executable, "-m", "detector.backtest", *args],
        {**os.environ, **topics.env(bootstrap), **(env or {})},
        timeout=120,
    )


def _id(value: bytes) -> str:
    return str(json.loads(value)["id"])


def test_the_backtest_gives_the_live_detectors_verdicts(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    create_topic(bootstrap, topics.input, partitions=3)
    segments = stream()
    total = produce_stream(bootstrap, topics.input, segments)

    detector = Service.module(
        "detector", {**topics.env(bootstrap), "RULES_FILE": str(rules_file)}, tmp_path
    )
    try:
        outputs = consume(
            bootstrap, [topics.legit, topics.fraud, topics.invalid], total, timeout=90, settle=1
        )
        assert detector.stop() == 0, detector.output()
    finally:
        detector.kill()
    assert len(outputs) == total, detector.output()
    role = {topics.legit: "legit", topics.fraud: "fraud", topics.invalid: "invalid"}
    live: dict[str, str] = {}
    for r in outputs:
        rules = dict(r.headers).get(HEADER_RULES, b"").decode()
        live[_id(r.value)] = f"{role[r.topic]}:{rules}"

    replayed: dict[str, str] = {}

    def seen(record: Any, result: Classification) -> None:
        replayed[_id(record.value)] = f"{result.verdict.value}:{result.rules.decode()}"

    inputs = consume(bootstrap, [topics.input], total)
    backtest.replay(inputs, load_rules(rules_file), on_verdict=seen)
    differing = {k: (live.get(k), v) for k, v in replayed.items() if live.get(k) != v}
    assert not differing, f"live versus replay: {sorted(differing.items())[:10]}"
    assert len(replayed) == len(live) == total
    verdicts = Counter(live.values())
    assert verdicts["fraud:velocity"] > 0, verdicts  # the bursts are caught
    assert verdicts["invalid:"] == 6, verdicts

    # The command reports the same counts, each rule's alerts being its live fraud records.
    done = run_backtest(topics, bootstrap, "--rules", str(rules_file), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["records"] == total
    assert report["invalid"] == 6
    assert report["total"]["alerts"] == sum(v.startswith("fraud:") for v in live.values())
    for name in ("amount", "velocity"):
        fired = sum(name in v.partition(":")[2].split(",") for v in live.values())
        assert report["rules"][name]["alerts"] == fired
    assert report["labelled"] == {"big_ticket": 6, "card_testing": 24, "velocity_burst": 48}
    assert report["rules"]["amount"]["recall"]["big_ticket"] == 1.0
    assert report["rules"]["velocity"]["recall"]["velocity_burst"] >= 18 / 48  # 6th to 8th
    assert report["total"]["recall"]["card_testing"] < 1  # no rule looks for it
    assert 0 < report["total"]["precision"] < 1  # normal records over 900 are false alerts

    table = run_backtest(topics, bootstrap, "--rules", str(rules_file))
    assert table.returncode == 0, table.stderr
    assert f"{total} records, 6 invalid" in table.stdout

    # --since: the records from that time on, read from each partition's first offset there.
    middle = T0 + (total // 2) * STEP_MS
    since = datetime.fromtimestamp(middle / 1000, UTC).isoformat()
    later = sum(1 for _, records in segments for *_, t in records if t >= middle)
    done = run_backtest(topics, bootstrap, "--rules", str(rules_file), "--json", "--since", since)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == later


def test_each_way_the_backtest_cannot_run_is_one_line(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)

    unknown = run_backtest(topics, bootstrap, "--rules", str(rules_file))
    assert unknown.returncode == backtest.EXIT_NO_TOPIC, unknown.stderr
    assert unknown.stderr == f"backtest: the input topic {topics.input} does not exist\n"
    assert unknown.stdout == ""

    create_topic(bootstrap, topics.input, partitions=2)
    empty = run_backtest(topics, bootstrap, "--rules", str(rules_file))
    assert empty.returncode == backtest.EXIT_EMPTY, empty.stderr
    assert empty.stderr == (
        f"backtest: nothing to replay: the input topic {topics.input} is empty\n"
    )

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: amount, type: amount_above}\n")
    refused = run_backtest(topics, bootstrap, "--rules", str(bad))
    assert refused.returncode == backtest.EXIT_BAD_SETTING
    assert refused.stderr == (
        f"backtest: invalid setting RULES_FILE {bad}: rule #1 (amount): field threshold: missing\n"
    )
