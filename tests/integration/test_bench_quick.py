"""`make bench QUICK=1`, shrunk further: the bench runs end to end and its output is complete.

The bench starts a jar broker of its own, so this needs Java; it checks that every section was
measured and written (JSON, markdown table, PNG), never how fast anything was. The quick run
skips the reference rows (Quix Streams, confluent-kafka: bench/reference.py, whose packages only
`make bench` installs, into a venv of its own), so their targets are reported as n/a here.

The bench measures the detector on every client whichever KAFKA_CLIENT the environment names;
that setting chooses only the client of the generator section (and its raw producer).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.context import CLIENTS
from devtools.broker import java_available
from tests.kafka_helpers import run_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GUARANTEES = ("at_least_once", "exactly_once")


def _number(results: dict[str, Any], *path: str) -> float:
    node: Any = results
    for key in path:
        assert isinstance(node, dict), f"{'.'.join(path)}: {key} is not under a mapping"
        assert key in node, f"missing {'.'.join(path)}"
        node = node[key]
    assert isinstance(node, int | float), f"{'.'.join(path)} = {node!r} is not a number"
    assert not isinstance(node, bool)
    assert math.isfinite(node), f"{'.'.join(path)} = {node!r}"
    return float(node)


def _check_targets(targets: list[dict[str, Any]], rows: list[str]) -> None:
    """Every target measured and judged in the JSON and the table, but the four against the Quix
    Streams app and the confluent-kafka loop (not run in a quick run): n/a."""
    assert len(targets) == 21  # 19, and the backtest against the detector on each client
    skipped = [
        t for t in targets if "Quix Streams" in t["check"] or "confluent-kafka loop" in t["check"]
    ]
    assert len(skipped) == 4
    for target in targets:
        if target in skipped:
            assert target["value"] is None, target
            assert target["pass"] is None, target
        else:
            _number(target, "value")
            assert isinstance(target["pass"], bool), target
        verdicts = ("n/a",) if target in skipped else ("PASS", "FAIL")
        assert any(target["check"] in row and any(v in row for v in verdicts) for row in rows)


def _check_each_client(results: dict[str, Any]) -> None:
    """The detector, its raw pipe, its latency and its scaling were measured on every client."""
    for client in CLIENTS:
        for guarantee in GUARANTEES:
            for section in ("detector", "detector_velocity"):
                assert _number(results, section, client, guarantee, "rate") > 0
                assert _number(results, section, client, guarantee, "peak_rss_mb") > 0
                assert _number(results, section, client, guarantee, "cpu_us_per_record") > 0
            for rate in ("1000", "5000"):
                for pct in ("p50", "p95", "p99"):
                    _number(results, "latency", client, guarantee, rate, "latency_ms", pct)
        assert _number(results, "backtest", client, "rate") > 0
        pipe = results["baselines"]["raw_pipe"][client]
        assert _number({"pipe": pipe}, "pipe", "cpu_us_per_record") > 0
        for detectors in ("1", "3"):
            assert _number(results, "scaling", client, detectors, "rate") > 0
        # The amount rule routes alike on both clients.
        assert results["detector"][client]["at_least_once"]["routing_as_expected"] is True


def _check_client_rows(rows: list[str]) -> None:
    for client in CLIENTS:
        assert any(row.startswith(f"| detector on {client}, exactly_once |") for row in rows)
        velocity_row = f"| detector on {client}, exactly_once, velocity on |"
        assert any(row.startswith(velocity_row) for row in rows)
        assert any(row.startswith(f"| raw pipe on {client} ") for row in rows)
        assert any(row.startswith(f"| backtest on {client} (replay") for row in rows)
        assert any(row.startswith(f"| {client} | exactly_once | 5,000 |") for row in rows)


@pytest.mark.timeout(600)
def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    if not java_available():
        pytest.skip("the bench starts its own jar broker, which needs Java")
    temp = tmp_path / "tmp"  # the bench's broker data dir goes here and must be gone after
    temp.mkdir()
    out = tmp_path / "results"
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_SCALE": "0.2", "TMPDIR": str(temp)}
    done = run_command([sys.executable, "-m", "bench", "--out", str(out)], env, timeout=540)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    results = json.loads((out / "bench-quick.json").read_text())
    assert results["meta"]["mode"] == "quick"
    for field in ("nproc", "memory_gib"):
        _number(results, "meta", "machine", field)
    for field in ("cpu_model", "python", "java", "kafka"):
        assert results["meta"]["machine"][field]

    assert results["generator"]["client"] == os.environ.get("KAFKA_CLIENT", "kafka-python")
    paced = results["generator"]["paced"]
    assert [p["target_rate"] for p in paced] == [100, 1000, 10_000]
    for i in range(len(paced)):
        assert _number({"p": paced[i]}, "p", "achieved_rate") > 0
    for name in ("unthrottled", "raw_producer"):
        assert _number(results, "generator", name, "rate") > 0
    _check_each_client(results)
    for name in ("naive", "producer_performance", "consumer_performance"):
        assert _number(results, "baselines", name, "rate") > 0
    for rules in ("amount_only", "velocity"):
        for stage in ("decode", "classify", "headers", "total"):
            _number(results, "hot_path", rules, stage)
    assert _number(results, "baselines", "naive", "outputs", "fraud") > 0
    assert results["baselines"]["naive"]["routing_as_expected"] is True
    assert _number(results, "memory", "detector_peak_rss_mb") > 0
    assert "quick run" in results["reference"]["skipped"]
    state = results["velocity_state"]  # 6. the velocity windows' memory and their restore
    for path in (
        ("velocity", "peak_rss_mb"),
        ("amount_only", "peak_rss_mb"),
        ("restore", "seconds"),
    ):
        assert _number(state, *path) > 0
    assert _number(state, "restore", "records_replayed") > 0
    assert state["restore"]["partitions"] == 3
    table = (out / "bench-quick.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")]
    _check_targets(results["targets"], rows)
    _check_client_rows(rows)
    assert "### Scaling: three detectors on three partitions against one" in table
    assert "### The hot path: our own cost per record on each client" in table
    assert any(row.startswith("| restore: time per 100k records replayed |") for row in rows)
    assert "### Targets" in done.stdout  # the table is printed too

    assert (out / "bench-quick.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(temp.glob("fraud-bench-*")), "the bench's broker data dir was left behind"
