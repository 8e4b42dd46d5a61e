"""8. Scaling: three detectors in one group on the three partitions, against one detector, on
each client (at_least_once, amount rule only).

Both counts are measured alike, so that neither is timed through a group join or a rebalance:
the detectors start on an empty input topic, and once the group is stable with every detector
in it and every partition held, a raw producer writes the input (records encoded up front, on
confluent-kafka: the least CPU a producer here takes from the detectors). The group is timed by
its committed offsets, from the input's first record to its end (every detector is in
the group by then, so there is no first commit to wait for); the CPU time per record is that of
all the detectors together over the same span.

On a machine with fewer cores than detectors (the bench's own has 2), three detectors share the
cores with each other, the producer and the broker: the row then says what one group gains or
loses on those cores, not what three cores give. The report derives from it what one detector
per core implies for more partitions.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from bench.context import CLIENTS, Context, log
from bench.detector_bench import StalledError, detector_env, retried
from bench.kafka_ops import (
    admin_client,
    committed,
    create_topics,
    end_offsets,
    wait_for_group,
    watch,
)
from bench.procs import Process

DETECTORS = (1, 3)
GUARANTEE = "at_least_once"
PRODUCER_CLIENT = "confluent"


def run(ctx: Context, client: str, detectors: int) -> dict[str, Any]:
    cfg = ctx.config
    group = ctx.name(f"scaling-{client}-{detectors}")
    topic = f"{group}.in"
    create_topics(ctx.bootstrap, [topic], cfg.partitions)
    env = detector_env(topic, group, client, GUARANTEE, cfg.partitions)
    processes = [
        ctx.service("detector", f"scaling-{client}-{detectors}-{n}", env)
        for n in range(1, detectors + 1)
    ]
    what = f"{detectors} detector(s) on {client}"
    try:
        with admin_client(ctx.bootstrap) as admin:
            wait_for_group(admin, group, cfg.partitions, timeout=120, members=detectors)
            producer = ctx.baseline(
                "produce",
                f"scaling-producer-{client}-{detectors}",
                ["--topic", topic, "--count", str(cfg.records), "--seed", str(cfg.seed)],
                {"KAFKA_CLIENT": PRODUCER_CLIENT},
            )
            _wait_for_input(admin, topic, cfg.partitions, producer)
            progress = watch(
                lambda: committed(admin, group),
                cfg.records,
                120 + cfg.records / 500,
                lambda: all(p.running() for p in processes),
                cpu=lambda: _total_cpu(processes),
            )
        producer.wait(60)
    finally:
        for process in processes:
            process.stop()
    if not progress.finished:
        tails = "\n".join(p.output_tail() for p in processes)
        raise StalledError(f"{what} did not finish: {progress.samples[-3:]}\n{tails}")
    (_, _, cpu_start), (seconds, _, cpu_end) = progress.samples[0], progress.samples[-1]
    cpu = None if cpu_start is None or cpu_end is None else cpu_end - cpu_start
    result = {
        "detectors": detectors,
        "partitions": cfg.partitions,
        "rate": cfg.records / max(seconds, 1e-3),
        "seconds": seconds,
        "records": cfg.records,
        "cpu_us_per_record": None if cpu is None else 1e6 * cpu / cfg.records,
    }
    log.info("scaling, %s: %.0f records/s", what, result["rate"])
    return result


def _wait_for_input(admin: Any, topic: str, partitions: int, producer: Process) -> None:
    """Until the producer has written the first record (its own start-up is not timed)."""
    deadline = time.monotonic() + 120
    while end_offsets(admin, [topic], partitions) == 0:
        if not producer.running() or time.monotonic() > deadline:
            raise RuntimeError(f"the producer wrote nothing:\n{producer.output_tail()}")
        time.sleep(0.01)


def _total_cpu(processes: list[Process]) -> float | None:
    seconds = [p.cpu_seconds() for p in processes]
    return None if None in seconds else sum(s for s in seconds if s is not None)


def all_runs(ctx: Context) -> dict[str, Any]:
    """By client, then by the number of detectors ("1", "3")."""
    return {
        "guarantee": GUARANTEE,
        "producer_client": PRODUCER_CLIENT,
        **{
            client: {
                str(n): retried(partial(run, ctx, client, n), f"{n} detector(s) on {client}")
                for n in DETECTORS
            }
            for client in CLIENTS
        },
    }


def markdown(results: dict[str, Any]) -> list[str]:
    scaling = results.get("scaling")
    if not scaling:
        return []
    nproc = results["meta"]["machine"]["nproc"]
    lines = [
        "",
        "### Scaling: three detectors on three partitions against one",
        "",
        f"{scaling['guarantee']}, amount rule only, one group; the group settled before the "
        f"input was written (by a raw producer on {scaling['producer_client']}). CPU per record: "
        "all the group's detectors together.",
        "",
        "| client | 1 detector, records/s | 3 detectors, records/s | 3 / 1 | CPU per record, 1 "
        "| CPU per record, 3 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    producer_performance = (results.get("baselines") or {}).get("producer_performance") or {}
    for client in CLIENTS:
        one, three = scaling[client]["1"], scaling[client]["3"]
        gain = three["rate"] / one["rate"]
        lines.append(
            f"| {client} | {one['rate']:,.0f} | {three['rate']:,.0f} | {gain:.2f}x | "
            f"{_us(one['cpu_us_per_record'])} | {_us(three['cpu_us_per_record'])} |"
        )
        if one["cpu_us_per_record"]:
            per_core = 1e6 / one["cpu_us_per_record"]
            notes.append(
                f"On {client}, one detector spent {one['cpu_us_per_record']:.1f} us of CPU per "
                f"record, so one core carries at most about {per_core:,.0f} records/s; twelve "
                f"detectors on twelve partitions, a core each, would carry up to about "
                f"{12 * per_core:,.0f} records/s, provided the broker keeps up on cores of its own."
            )
    lines += [
        "",
        f"This machine has {nproc} cores, shared by the detectors, the producer and the broker: "
        f"three detectors can at best reach {min(3, nproc)}x one here, less what the broker "
        "takes, and the 3 / 1 ratio says how much of that they got; it does not measure what "
        "three cores would give.",
        *(f"\n{note}" for note in notes),
    ]
    if rate := producer_performance.get("rate"):
        lines.append(
            f"\nThe broker's own limit on this machine: Kafka's ProducerPerformance reached "
            f"{rate:,.0f} records/s here, with every core shared."
        )
    return lines


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} us"
