"""The bench's judging and its page update, on made-up results (no broker, no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.report import DOCS_BEGIN, DOCS_END, update_docs
from bench.targets import targets


def _results() -> dict[str, Any]:
    def row(rate: float) -> dict[str, Any]:
        return {"rate": rate}

    return {
        "detector": {
            "kafka-python": {"at_least_once": row(27_000), "exactly_once": row(15_000)},
            "confluent": {"at_least_once": row(60_000), "exactly_once": row(30_000)},
        },
        "detector_velocity": {
            "kafka-python": {"at_least_once": row(20_000), "exactly_once": row(14_000)},
            "confluent": {"at_least_once": row(48_000), "exactly_once": row(21_000)},
        },
        "baselines": {"raw_pipe": {"kafka-python": row(30_000), "confluent": row(90_000)}},
        "backtest": {"kafka-python": row(45_000), "confluent": row(75_000)},
        "reference": {
            "quix": {"at_least_once": row(30_000), "exactly_once": row(25_000)},
            "confluent": {"at_least_once": row(100_000), "exactly_once": row(100_000)},
        },
    }


def _by_check(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["check"]: t for t in targets(results)}


def test_each_client_is_judged_against_its_own_rows() -> None:
    checks = _by_check(_results())
    pipe = checks["detector on kafka-python, at_least_once / raw pipe on kafka-python"]
    assert pipe["value"] == pytest.approx(0.9)
    assert pipe["pass"] is True
    eos_pipe = checks["detector on kafka-python, exactly_once / raw pipe on kafka-python"]
    assert eos_pipe["value"] == pytest.approx(0.5)
    assert eos_pipe["pass"] is False
    quix = checks["detector on confluent, at_least_once / Quix Streams at-least-once"]
    assert (quix["value"], quix["pass"]) == (pytest.approx(2.0), True)
    loop = checks["detector on confluent, exactly_once / confluent-kafka loop exactly_once"]
    assert (loop["value"], loop["pass"]) == (pytest.approx(0.3), False)
    velocity = checks["velocity on: throughput cost, confluent, exactly_once"]
    assert (velocity["value"], velocity["pass"]) == (pytest.approx(30.0), False)
    velocity = checks["velocity on: throughput cost, confluent, at_least_once"]
    assert (velocity["value"], velocity["pass"]) == (pytest.approx(20.0), True)
    # The backtest against the detector in its default guarantee on its client.
    replay = checks["backtest on kafka-python / detector on kafka-python, exactly_once"]
    assert (replay["value"], replay["pass"]) == (pytest.approx(3.0), True)
    replay = checks["backtest on confluent / detector on confluent, exactly_once"]
    assert (replay["value"], replay["pass"]) == (pytest.approx(2.5), False)


def test_what_a_run_did_not_measure_is_neither_pass_nor_fail() -> None:
    results = _results()
    del results["reference"]
    checks = _by_check(results)
    quix = checks["detector on confluent, exactly_once / Quix Streams exactly-once"]
    assert (quix["value"], quix["pass"]) == (None, None)
    p99 = checks["p99 latency at 1,000/s, confluent, exactly_once"]
    assert (p99["value"], p99["pass"], p99["threshold"]) == (None, None, 150.0)


def test_the_page_gets_the_report_between_its_markers_only(tmp_path: Path) -> None:
    page, chart, copy = tmp_path / "page.md", tmp_path / "run.png", tmp_path / "copy.png"
    page.write_text(f"# Before\n\n{DOCS_BEGIN}\nold figures\n{DOCS_END}\n\n# After\n")
    chart.write_bytes(b"png")
    results = {
        "meta": {
            "mode": "full",
            "started_at": "2026-12-05T14:00:00+00:00",
            "duration_seconds": 1.0,
            "command": "python -m bench --docs",
            "machine": {
                "nproc": 2,
                "cpu_model": "cpu",
                "memory_gib": 1,
                "python": "3",
                "java": "java",
                "kafka": "4",
                "kafka_python": "3",
            },
            "load_average_start": [0.0],
            "load_average_end": [0.0],
        },
        "targets": [],
    }
    update_docs(results, page, chart, copy)
    text = page.read_text()
    assert text.startswith(f"# Before\n\n{DOCS_BEGIN}\n\n## Benchmark (full run, 2026-12-05")
    assert text.endswith(f"{DOCS_END}\n\n# After\n")
    assert "old figures" not in text
    assert copy.read_bytes() == b"png"
    page.write_text("# No section\n")
    with pytest.raises(RuntimeError, match="no generated section"):
        update_docs(results, page, chart, copy)
