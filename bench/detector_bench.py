"""2./3./5. The detector's throughput in each guarantee and its peak RSS, against the raw pipe
and the naive detector, all on the same preloaded input.

Each consumer runs as a process in a fresh consumer group and is timed from outside, from the
first moment the group has committed anything until its committed offsets reach the end of the
input: every output of every input record is then durable (committed in the same Kafka
transaction in exactly_once; acknowledged before the offsets were committed in at_least_once and
in the raw pipe). The naive detector auto-commits offsets regardless of its sends, so it is timed
by its outputs instead: until the legit and fraud topics hold one record per input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.context import Context, best, log
from bench.kafka_ops import admin_client, committed, create_topics, end_offsets, watch
from bench.procs import Process

GUARANTEES = ("at_least_once", "exactly_once")


class StalledError(RuntimeError):
    """A consumer made no progress (see the process log); the run is tried once more."""


def _timed(ctx: Context, process: Process, read: Callable[[], int], what: str) -> dict[str, Any]:
    target = ctx.config.records
    try:
        progress = watch(read, target, 120 + target / 500, process.running, cpu=process.cpu_seconds)
        peak_rss = process.peak_rss_mb()
    finally:
        process.stop()
    if not progress.finished:
        raise StalledError(
            f"{what} did not finish: {progress.samples[-3:]}\n{process.output_tail()}"
        )
    result = {
        "rate": progress.rate(),
        "seconds": progress.seconds(),
        "records": target,
        "cpu_us_per_record": progress.cpu_per_record_us(),
        "startup_seconds": next(t for t, v, _ in progress.samples if v > 0),
        "peak_rss_mb": peak_rss,
    }
    log.info("%s: %.0f records/s, %s", what, result["rate"], _cpu(result))
    return result


def _retried(run: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
    """One more try, in a fresh group, when a consumer stalls (seen once with kafka-python
    3.0.12: a consumer spinning in poll() while its group stayed Empty)."""
    try:
        return run()
    except StalledError as exc:
        log.warning("%s stalled, trying once more: %s", what, str(exc).splitlines()[0])
        return {**run(), "retried": True}


def _cpu(result: dict[str, Any]) -> str:
    cpu = result["cpu_us_per_record"]
    return "cpu n/a" if cpu is None else f"{cpu:.1f} us CPU/record"


def detector(ctx: Context, input_topic: str, guarantee: str, run: int) -> dict[str, Any]:
    return _retried(lambda: _detector(ctx, input_topic, guarantee, run), f"detector {guarantee}")


def raw_pipe(ctx: Context, input_topic: str, run: int) -> dict[str, Any]:
    return _retried(lambda: _raw_pipe(ctx, input_topic, run), "raw pipe")


def naive(ctx: Context, input_topic: str, run: int) -> dict[str, Any]:
    return _retried(lambda: _naive(ctx, input_topic, run), "naive detector")


def _detector(ctx: Context, input_topic: str, guarantee: str, run: int) -> dict[str, Any]:
    group = ctx.name(f"detector-{guarantee}")
    process = ctx.service(
        "detector",
        f"detector-{guarantee}-{run}",
        {
            "TRANSACTIONS_TOPIC": input_topic,
            "TRANSACTIONS_TOPIC_PARTITIONS": str(ctx.config.partitions),
            "LEGIT_TOPIC": f"{group}.legit",
            "FRAUD_TOPIC": f"{group}.fraud",
            "DEAD_LETTER_TOPIC": f"{group}.invalid",
            "CONSUMER_GROUP": group,
            "PROCESSING_GUARANTEE": guarantee,
        },
    )
    with admin_client(ctx.bootstrap) as admin:
        return _timed(ctx, process, lambda: committed(admin, group), f"detector {guarantee}")


def _raw_pipe(ctx: Context, input_topic: str, run: int) -> dict[str, Any]:
    group = ctx.name("pipe")
    output = f"{group}.out"
    create_topics(ctx.bootstrap, [output], ctx.config.partitions)
    process = ctx.baseline(
        "pipe", f"raw-pipe-{run}", ["--topic", input_topic, "--group", group, "--output", output]
    )
    with admin_client(ctx.bootstrap) as admin:
        return _timed(ctx, process, lambda: committed(admin, group), "raw pipe")


def _naive(ctx: Context, input_topic: str, run: int) -> dict[str, Any]:
    group = ctx.name("naive")
    legit, fraud = f"{group}.legit", f"{group}.fraud"
    create_topics(ctx.bootstrap, [legit, fraud], ctx.config.partitions)
    process = ctx.baseline(
        "naive",
        f"naive-detector-{run}",
        ["--topic", input_topic, "--group", group, "--legit", legit, "--fraud", fraud],
    )
    partitions = ctx.config.partitions
    with admin_client(ctx.bootstrap) as admin:
        return _timed(
            ctx, process, lambda: end_offsets(admin, [legit, fraud], partitions), "naive detector"
        )


def consumers(ctx: Context, input_topic: str) -> dict[str, Any]:
    """Every consumer `repeats` times, interleaved so that a noisy spell hits all of them alike."""
    runs: dict[str, list[dict[str, Any]]] = {
        "raw_pipe": [],
        "at_least_once": [],
        "exactly_once": [],
        "naive": [],
    }
    for run in range(1, ctx.config.repeats + 1):
        runs["raw_pipe"].append(raw_pipe(ctx, input_topic, run))
        for guarantee in GUARANTEES:
            runs[guarantee].append(detector(ctx, input_topic, guarantee, run))
        runs["naive"].append(naive(ctx, input_topic, run))
    return {name: best(samples) for name, samples in runs.items()}
