"""The targets a run is judged by, each with its measured value and pass or miss (None: the
run did not measure it). Ratios and costs are taken within the run: rates from the throughput
rows, p99 from the latency rows, peak RSS from every detector run."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from bench.context import CLIENTS

QUIX_NAMES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}
GUARANTEES = tuple(QUIX_NAMES)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}
# The detector on kafka-python against its raw pipe, by guarantee.
KAFKA_PYTHON_PIPE = {"at_least_once": 0.9, "exactly_once": 0.75}
# The detector on confluent against the reference rows, in each guarantee.
CONFLUENT_QUIX = 1.5
CONFLUENT_LOOP = 0.5
VELOCITY_COST_PERCENT = 25.0
# End-to-end p99 at 1,000/s on each client, by guarantee.
P99_MS = {"at_least_once": 50.0, "exactly_once": 150.0}
PEAK_RSS_MB = 150.0
# The backtest against the live detector as it runs by default (exactly_once), on the same
# client and input.
BACKTEST_SPEEDUP = 3.0


def get(results: dict[str, Any], *path: str) -> Any:
    """results[path[0]][path[1]]...; None where any step is missing."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def cost(base: float | None, with_more: float | None) -> float | None:
    """How much throughput `with_more` gives up against `base`, in percent."""
    share = ratio(with_more, base)
    return None if share is None else 100 * (1 - share)


def target(check: str, value: float | None, op: str, threshold: float, unit: str) -> dict[str, Any]:
    return {
        "check": check,
        "value": value,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "pass": None if value is None else OPS[op](value, threshold),
    }


def detector_rate(results: dict[str, Any], client: str, guarantee: str) -> float | None:
    rate: float | None = get(results, "detector", client, guarantee, "rate")
    return rate


def _detector_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    pipe = get(results, "baselines", "raw_pipe", "kafka-python", "rate")
    for guarantee, threshold in KAFKA_PYTHON_PIPE.items():
        rate = detector_rate(results, "kafka-python", guarantee)
        check = f"detector on kafka-python, {guarantee} / raw pipe on kafka-python"
        out.append(target(check, ratio(rate, pipe), ">=", threshold, "x"))
    for guarantee in GUARANTEES:
        rate = detector_rate(results, "confluent", guarantee)
        quix = get(results, "reference", "quix", guarantee, "rate")
        check = f"detector on confluent, {guarantee} / Quix Streams {QUIX_NAMES[guarantee]}"
        out.append(target(check, ratio(rate, quix), ">=", CONFLUENT_QUIX, "x"))
        loop = get(results, "reference", "confluent", guarantee, "rate")
        check = f"detector on confluent, {guarantee} / confluent-kafka loop {guarantee}"
        out.append(target(check, ratio(rate, loop), ">=", CONFLUENT_LOOP, "x"))
    for client in CLIENTS:
        for guarantee in GUARANTEES:
            velocity = get(results, "detector_velocity", client, guarantee, "rate")
            check = f"velocity on: throughput cost, {client}, {guarantee}"
            cut = cost(detector_rate(results, client, guarantee), velocity)
            out.append(target(check, cut, "<=", VELOCITY_COST_PERCENT, "%"))
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets. The detector's rows are the amount rule only; the naive detector is
    a reference without a target."""
    out = _detector_targets(results)
    for paced in get(results, "generator", "paced") or []:
        check = f"generator at {paced['target_rate']:,.0f}/s: achieved rate off target by"
        out.append(target(check, abs(paced["error_percent"]), "<=", 1.0, "%"))
    unthrottled = ratio(
        get(results, "generator", "unthrottled", "rate"),
        get(results, "generator", "raw_producer", "rate"),
    )
    out.append(target("generator unthrottled / raw producer", unthrottled, ">=", 0.9, "x"))
    for client in CLIENTS:
        for guarantee, limit in P99_MS.items():
            p99 = get(results, "latency", client, guarantee, "1000", "latency_ms", "p99")
            check = f"p99 latency at 1,000/s, {client}, {guarantee}"
            out.append(target(check, p99, "<=", limit, "ms"))
    for client in CLIENTS:
        live = detector_rate(results, client, "exactly_once")
        backtest = get(results, "backtest", client, "rate")
        check = f"backtest on {client} / detector on {client}, exactly_once"
        out.append(target(check, ratio(backtest, live), ">=", BACKTEST_SPEEDUP, "x"))
    peak_rss = get(results, "memory", "detector_peak_rss_mb")
    out.append(target("detector peak RSS (VmHWM)", peak_rss, "<", PEAK_RSS_MB, "MiB"))
    return out
