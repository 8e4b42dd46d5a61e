"""1. The generator: achieved vs target rate, and unthrottled vs a raw producer.

The rate is read from the records themselves: with CreateTime, (n - 1) records were sent between
the first and the last timestamp; start-up and the final flush are not part of it. The
unthrottled run and the raw producer write to LogAppendTime topics instead, so both are timed by
when the broker appended their records: delivered throughput, not just handing records over.
"""

from __future__ import annotations

import json
from typing import Any

from bench.context import Context, best, log
from bench.kafka_ops import LOG_APPEND_TIME, create_topics, timestamp_span

UNTHROTTLED_RATE = 1e9


def last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise RuntimeError(f"no JSON line in:\n{text}")


def _rate_from_topic(ctx: Context, topic: str, expected: int) -> tuple[float, float]:
    count, first, last = timestamp_span(ctx.bootstrap, topic, ctx.config.partitions)
    if count != expected:
        raise RuntimeError(f"{topic}: {count} records, expected {expected}")
    seconds = (last - first) / 1000
    if seconds <= 0:
        raise RuntimeError(f"{topic}: all {count} records have the same timestamp")
    return (count - 1) / seconds, seconds


def run_generator(ctx: Context, label: str, topic: str, rate: float, count: int) -> None:
    process = ctx.service(
        "generator",
        label,
        {
            "TRANSACTIONS_TOPIC": topic,
            "TRANSACTIONS_TOPIC_PARTITIONS": str(ctx.config.partitions),
            "TRANSACTIONS_PER_SECOND": repr(float(rate)),
            "TRANSACTIONS_COUNT": str(count),
            "RANDOM_SEED": str(ctx.config.seed),
        },
    )
    timeout = 120 + (3 * count / rate if rate < UNTHROTTLED_RATE else count / 1000)
    code = process.wait(timeout)
    if code != 0:
        raise RuntimeError(f"generator exited {code}:\n{process.output_tail()}")


def paced_rates(ctx: Context) -> list[dict[str, Any]]:
    results = []
    for rate in ctx.config.generator_rates:
        topic = ctx.name(f"generator-{rate:g}")
        create_topics(ctx.bootstrap, [topic], ctx.config.partitions)
        count = round(rate * ctx.config.generator_seconds) + 1
        run_generator(ctx, f"generator-{rate:g}", topic, rate, count)
        achieved, seconds = _rate_from_topic(ctx, topic, count)
        results.append(
            {
                "target_rate": rate,
                "achieved_rate": achieved,
                "ratio": achieved / rate,
                "error_percent": 100 * (achieved - rate) / rate,
                "records": count,
                "seconds": seconds,
            }
        )
        log.info("generator at %g/s: achieved %.2f/s over %.2fs", rate, achieved, seconds)
    return results


def raw_producer(ctx: Context, topic: str, label: str = "raw-producer") -> dict[str, Any]:
    """Preload `topic` (LogAppendTime) with the raw producer and time it. The detector's input."""
    count = ctx.config.records
    create_topics(ctx.bootstrap, [topic], ctx.config.partitions, LOG_APPEND_TIME)
    process = ctx.baseline(
        "produce",
        label,
        ["--topic", topic, "--count", str(count), "--seed", str(ctx.config.seed)],
    )
    code = process.wait(120 + count / 1000)
    if code != 0:
        raise RuntimeError(f"raw producer exited {code}:\n{process.output_tail()}")
    own = last_json(process.output_tail())
    rate, seconds = _rate_from_topic(ctx, topic, count)
    log.info("raw producer: %.0f records/s (own timing %.0f/s)", rate, own["rate"])
    return {"rate": rate, "seconds": seconds, "records": count, "own_timing_rate": own["rate"]}


def unthrottled(ctx: Context, label: str = "generator-unthrottled") -> dict[str, Any]:
    count = ctx.config.records
    topic = ctx.name("generator-unthrottled")
    create_topics(ctx.bootstrap, [topic], ctx.config.partitions, LOG_APPEND_TIME)
    run_generator(ctx, label, topic, UNTHROTTLED_RATE, count)
    rate, seconds = _rate_from_topic(ctx, topic, count)
    log.info("generator unthrottled: %.0f records/s", rate)
    return {"target_rate": UNTHROTTLED_RATE, "rate": rate, "seconds": seconds, "records": count}


def producers(ctx: Context, input_topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw producer and the unthrottled generator, `repeats` times each and interleaved (as
    the consumers are), so that a noisy spell hits both alike; the fastest run of each counts.
    The first raw run writes `input_topic`, the input of the detector and its baselines."""
    raw_runs: list[dict[str, Any]] = []
    generator_runs: list[dict[str, Any]] = []
    for run in range(1, ctx.config.repeats + 1):
        topic = input_topic if run == 1 else ctx.name("raw-producer")
        raw_runs.append(raw_producer(ctx, topic, f"raw-producer-{run}"))
        generator_runs.append(unthrottled(ctx, f"generator-unthrottled-{run}"))
    return best(raw_runs), best(generator_runs)
