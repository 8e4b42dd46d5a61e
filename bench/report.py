"""The run's results as JSON, a markdown table (also printed) and a PNG chart; targets pass/fail."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from bench.velocity_bench import markdown as velocity_markdown

BACKLOG_MS = 1000.0
QUIX_NAMES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _cost(base: float | None, with_more: float | None) -> float | None:
    """How much throughput `with_more` gives up against `base`, in percent."""
    ratio = _ratio(with_more, base)
    return None if ratio is None else 100 * (1 - ratio)


def _target(
    check: str, value: float | None, op: str, threshold: float, unit: str
) -> dict[str, Any]:
    return {
        "check": check,
        "value": value,
        "op": op,
        "threshold": threshold,
        "unit": unit,
        "pass": None if value is None else OPS[op](value, threshold),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met (None: not run).

    The detector's rows are the amount rule only; the naive detector and the confluent-kafka loop
    are references without a target."""
    pipe = _get(results, "baselines", "raw_pipe", "rate")
    alo = _get(results, "detector", "at_least_once", "rate")
    eos = _get(results, "detector", "exactly_once", "rate")
    out = [
        _target("detector at_least_once / raw pipe", _ratio(alo, pipe), ">=", 0.9, "x"),
        _target("detector exactly_once / raw pipe", _ratio(eos, pipe), ">=", 0.75, "x"),
    ]
    for guarantee, rate in (("at_least_once", alo), ("exactly_once", eos)):
        quix = _get(results, "reference", "quix", guarantee, "rate")
        out.append(
            _target(
                f"detector {guarantee} (amount only) / Quix Streams {QUIX_NAMES[guarantee]}",
                _ratio(rate, quix),
                ">=",
                1.3,
                "x",
            )
        )
    for guarantee, rate in (("at_least_once", alo), ("exactly_once", eos)):
        velocity = _get(results, "detector_velocity", guarantee, "rate")
        out.append(
            _target(
                f"velocity on: throughput cost, {guarantee}", _cost(rate, velocity), "<=", 25, "%"
            )
        )
    for paced in _get(results, "generator", "paced") or []:
        out.append(
            _target(
                f"generator at {paced['target_rate']:,.0f}/s: achieved rate off target by",
                abs(paced["error_percent"]),
                "<=",
                1.0,
                "%",
            )
        )
    out.append(
        _target(
            "generator unthrottled / raw producer",
            _ratio(
                _get(results, "generator", "unthrottled", "rate"),
                _get(results, "generator", "raw_producer", "rate"),
            ),
            ">=",
            0.9,
            "x",
        )
    )
    for guarantee, limit in (("at_least_once", 50.0), ("exactly_once", 250.0)):
        out.append(
            _target(
                f"p99 latency at 1,000/s, {guarantee}",
                _get(results, "latency", guarantee, "1000", "latency_ms", "p99"),
                "<=",
                limit,
                "ms",
            )
        )
    peak_rss = _get(results, "memory", "detector_peak_rss_mb")
    out.append(_target("detector peak RSS (VmHWM)", peak_rss, "<", 150, "MiB"))
    return out


# --------------------------------------------------------------------------- markdown


def _num(value: float | None, unit: str = "", digits: int | None = None) -> str:
    if value is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 2
    text = f"{value:,.{digits}f}"
    if unit == "x":
        return f"{text}x"
    return f"{text} {unit}".strip()


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"## Benchmark ({meta['mode']} run, {meta['started_at']}, "
        f"{meta['duration_seconds']:.0f} s)",
        "",
        f"`{meta['command']}` on {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB RAM, Python {machine['python']}, {machine['java']}, "
        f"Kafka {machine['kafka']}, kafka-python {machine['kafka_python']}; load average "
        f"{meta['load_average_start']} at start, {meta['load_average_end']} at end.",
        "",
        "### Targets",
        "",
        "| check | measured | target | result |",
        "|---|---:|---:|:---:|",
    ]
    for t in results["targets"]:
        digits = 2 if t["unit"] in ("x", "%") else 1
        lines.append(
            f"| {t['check']} | {_num(t['value'], t['unit'], digits)} "
            f"| {t['op']} {_num(t['threshold'], t['unit'], digits)} | {_verdict(t['pass'])} |"
        )
    lines += ["", "### Throughput", "", "| what | records/s | CPU per record | notes |"]
    lines.append("|---|---:|---:|---|")
    for label, path, note in THROUGHPUT_ROWS:
        row = _get(results, *path)
        if row is None:
            continue
        cpu = row.get("cpu_us_per_record")
        lines.append(
            f"| {label} | {_num(row.get('rate'))} | "
            f"{'' if cpu is None else _num(cpu, 'us', 1)} | {note(row)} |"
        )
    lines += _reference_notes(results)
    pipe_cpu = _get(results, "baselines", "raw_pipe", "cpu_us_per_record")
    if pipe_cpu:
        shares = []
        for label, path in (
            ("at_least_once", ("detector", "at_least_once")),
            ("exactly_once", ("detector", "exactly_once")),
            ("at_least_once velocity on", ("detector_velocity", "at_least_once")),
            ("exactly_once velocity on", ("detector_velocity", "exactly_once")),
            ("Quix at-least-once", ("reference", "quix", "at_least_once")),
            ("Quix exactly-once", ("reference", "quix", "exactly_once")),
            ("confluent-kafka at_least_once", ("reference", "confluent", "at_least_once")),
            ("confluent-kafka exactly_once", ("reference", "confluent", "exactly_once")),
            ("naive", ("baselines", "naive")),
        ):
            cpu = _get(results, *path, "cpu_us_per_record")
            if cpu is not None:
                shares.append(f"{label} {cpu / pipe_cpu:.2f}x")
        lines += [
            "",
            "CPU time per record relative to the raw pipe (less sensitive to other load on the "
            "machine than records/s): " + ", ".join(shares) + ".",
        ]
    paced = _get(results, "generator", "paced") or []
    if paced:
        lines += ["", "### Generator pacing", "", "| target/s | achieved/s | error | records |"]
        lines.append("|---:|---:|---:|---:|")
        for p in paced:
            lines.append(
                f"| {p['target_rate']:,.0f} | {p['achieved_rate']:,.2f} | "
                f"{p['error_percent']:+.3f}% | {p['records']:,} |"
            )
    latency = results.get("latency") or {}
    if latency:
        lines += ["", "### End-to-end latency (generator send to read_committed reader)", ""]
        lines.append("| guarantee | rate/s | p50 ms | p95 ms | p99 ms | max ms | records | note |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for guarantee, by_rate in latency.items():
            for rate, run in by_rate.items():
                s = run["latency_ms"]
                # Latency that keeps growing over the run is a backlog, not a processing delay.
                remark = "backlog: the detector fell behind" if s["p50"] > BACKLOG_MS else ""
                lines.append(
                    f"| {guarantee} | {int(rate):,} | {s['p50']:.1f} | {s['p95']:.1f} | "
                    f"{s['p99']:.1f} | {s['max']:.1f} | {s['count']:,} | {remark} |"
                )
    memory = results.get("memory") or {}
    if memory:
        lines += ["", "### Memory (detector VmHWM)", ""]
        lines += [f"- {name}: {_num(mb, 'MiB', 1)}" for name, mb in memory["by_run"].items()]
    lines += velocity_markdown(results.get("velocity_state"))
    return "\n".join(lines) + "\n"


def _reference_notes(results: dict[str, Any]) -> list[str]:
    """What the reference rows ran with (or why they did not run), and what velocity flagged."""
    lines: list[str] = []
    reference = results.get("reference") or {}
    if "skipped" in reference:
        lines += [
            "",
            f"Reference rows (Quix Streams, confluent-kafka loop): {reference['skipped']}.",
        ]
    elif versions := reference.get("versions"):
        lines += [
            "",
            f"Reference rows: quixstreams {versions['quixstreams']}, confluent-kafka "
            f"{versions['confluent_kafka']} (librdkafka {versions['librdkafka']}), bytes in and "
            "bytes out, the amount read with json.loads, committing every "
            f"{reference.get('commit_interval_ms', '?')} ms as the detector does; timed like the "
            "detector, by their committed offsets.",
        ]
    amount = _get(results, "detector", "at_least_once", "outputs", "fraud")
    velocity = _get(results, "detector_velocity", "at_least_once", "outputs", "fraud")
    if amount is not None and velocity is not None:
        records = _get(results, "detector", "at_least_once", "records") or 1
        remark = (
            " The velocity settings changed nothing: this detector has no velocity rule, so the "
            "velocity rows measured the amount rule only."
            if velocity == amount
            else ""
        )
        env = ", ".join(_velocity_env(results))
        lines += [
            "",
            f"Flagged as fraud (at_least_once): {amount:,} of {records:,} records with the amount "
            f"rule only, {velocity:,} with velocity on ({env}).{remark}",
        ]
    return lines


def _velocity_env(results: dict[str, Any]) -> list[str]:
    env = _get(results, "detector_velocity", "at_least_once", "env") or {}
    return [f"{name}={value}" for name, value in env.items()]


def _runs(row: dict[str, Any]) -> str:
    runs = row.get("runs") or []
    text = f"best of {len(runs)}: " + ", ".join(f"{r:,.0f}" for r in runs) if len(runs) > 1 else ""
    rss = row.get("peak_rss_mb")
    text = f"{text}{'; ' if text and rss else ''}{f'peak RSS {rss:.0f} MiB' if rss else ''}"
    outputs = row.get("outputs")
    if outputs and row.get("records"):
        share = f"fraud {100 * outputs['fraud'] / row['records']:.1f}%"
        if row.get("routing_as_expected") is False:
            share += " (NOT what the amount rule gives)"
        text = f"{text}; {share}" if text else share
    return text


def _with_runs(row: dict[str, Any], note: str) -> str:
    runs = _runs(row)
    return f"{runs}; {note}" if runs else note


def _reference_row(row: dict[str, Any]) -> str:
    return _with_runs(row, "reference")


THROUGHPUT_ROWS: list[tuple[str, tuple[str, ...], Callable[[dict[str, Any]], str]]] = [
    (
        "detector, at_least_once",
        ("detector", "at_least_once"),
        lambda r: _with_runs(r, "amount rule only"),
    ),
    ("detector, at_least_once, velocity on", ("detector_velocity", "at_least_once"), _runs),
    (
        "detector, exactly_once",
        ("detector", "exactly_once"),
        lambda r: _with_runs(r, "amount rule only"),
    ),
    ("detector, exactly_once, velocity on", ("detector_velocity", "exactly_once"), _runs),
    ("raw pipe (kafka-python, no parsing)", ("baselines", "raw_pipe"), _runs),
    ("Quix Streams app, at-least-once", ("reference", "quix", "at_least_once"), _reference_row),
    ("Quix Streams app, exactly-once", ("reference", "quix", "exactly_once"), _reference_row),
    (
        "confluent-kafka loop, at_least_once",
        ("reference", "confluent", "at_least_once"),
        _reference_row,
    ),
    (
        "confluent-kafka loop, exactly_once",
        ("reference", "confluent", "exactly_once"),
        _reference_row,
    ),
    ("naive detector (tutorial style)", ("baselines", "naive"), _reference_row),
    (
        "generator, unthrottled",
        ("generator", "unthrottled"),
        lambda r: _with_runs(r, "TRANSACTIONS_PER_SECOND=1e9"),
    ),
    (
        "raw kafka-python producer",
        ("generator", "raw_producer"),
        lambda r: _with_runs(r, "generator's make_producer, records encoded up front"),
    ),
    (
        "Kafka ProducerPerformance (Java)",
        ("baselines", "producer_performance"),
        lambda r: "acks=all, idempotent, linger.ms=5, batch.size=64 KiB, same payloads",
    ),
    (
        "Kafka ConsumerPerformance (Java)",
        ("baselines", "consumer_performance"),
        lambda r: "fetch rate, group join excluded",
    ),
]
