"""4. End-to-end latency: from the generator's send to a read_committed reader seeing the output.

On each client (the generator and the detector both run with that KAFKA_CLIENT), per run: fresh
topics and group; the detector starts and joins its group; a reader (this process, read_committed,
always kafka-python: the same yardstick for both) follows the three output topics; then the real
generator runs at the target rate for a fixed time. The reader notes when each transaction id shows
up; afterwards the input topic is read for each id's CreateTime (set by the generator's producer at
send). Latency = seen - CreateTime, over every record after a short warm-up. The detector forwards
the bytes unchanged, so the id is read from the value's first bytes without parsing.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from bench.context import Context, log
from bench.detector_bench import StalledError, retried
from bench.kafka_ops import (
    admin_client,
    create_topics,
    partitions_of,
    record_id,
    summarize,
    wait_for_group,
)
from bench.procs import Process
from kafka import KafkaConsumer

READER_FETCH_WAIT_MS = 20  # the reader's own long-poll, so it adds at most this


def _reader(bootstrap: str, topics: list[str], partitions: int) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=READER_FETCH_WAIT_MS,
        max_poll_records=100_000,
    )
    consumer.assign([tp for topic in topics for tp in partitions_of(topic, partitions)])
    return consumer


def _created_times(bootstrap: str, topic: str, partitions: int, count: int) -> dict[str, int]:
    consumer = _reader(bootstrap, [topic], partitions)
    created: dict[str, int] = {}
    deadline = time.monotonic() + 60
    try:
        while len(created) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    rid = record_id(record.value)
                    if rid is not None:
                        created[rid] = record.timestamp
    finally:
        consumer.close()
    return created


def run(ctx: Context, client: str, guarantee: str, rate: int) -> dict[str, Any]:
    cfg = ctx.config
    base = ctx.name(f"latency-{client}-{guarantee}-{rate}")
    topics = {
        "input": f"{base}.in",
        "legit": f"{base}.legit",
        "fraud": f"{base}.fraud",
        "invalid": f"{base}.invalid",
    }
    create_topics(ctx.bootstrap, list(topics.values()), cfg.partitions)
    detector = ctx.service(
        "detector",
        f"latency-detector-{client}-{guarantee}-{rate}",
        {
            "KAFKA_CLIENT": client,
            "TRANSACTIONS_TOPIC": topics["input"],
            "LEGIT_TOPIC": topics["legit"],
            "FRAUD_TOPIC": topics["fraud"],
            "DEAD_LETTER_TOPIC": topics["invalid"],
            "CONSUMER_GROUP": base,
            "PROCESSING_GUARANTEE": guarantee,
        },
    )
    count = round(rate * cfg.latency_seconds)
    outputs = [topics["legit"], topics["fraud"], topics["invalid"]]
    reader = _reader(ctx.bootstrap, outputs, cfg.partitions)
    seen: dict[str, float] = {}
    try:
        with admin_client(ctx.bootstrap) as admin:
            wait_for_group(admin, base, cfg.partitions, timeout=90)
        reader.poll(timeout_ms=100)  # connected and positioned before the first send
        generator = _start_generator(
            ctx, topics["input"], rate, count, client=client, guarantee=guarantee
        )
        deadline = time.monotonic() + cfg.latency_seconds + 90
        while len(seen) < count and time.monotonic() < deadline:
            batch = reader.poll(timeout_ms=50)
            now_ms = time.time() * 1000
            for records in batch.values():
                for record in records:
                    rid = record_id(record.value)
                    if rid is not None:
                        seen.setdefault(rid, now_ms)
            if not detector.running():
                raise RuntimeError(f"detector exited:\n{detector.output_tail()}")
        code = generator.wait(60)
        if code != 0:
            raise RuntimeError(f"generator exited {code}:\n{generator.output_tail()}")
        peak_rss = detector.peak_rss_mb()
    finally:
        reader.close()
        detector.stop()
    created = _created_times(ctx.bootstrap, topics["input"], cfg.partitions, count)
    start_ms = min(created.values()) if created else 0
    warm = start_ms + 1000 * cfg.latency_warmup_seconds
    latencies = [seen[i] - t for i, t in created.items() if i in seen and t >= warm]
    summary = summarize(latencies)
    result = {
        "rate": rate,
        "client": client,
        "guarantee": guarantee,
        "records": count,
        "outputs_seen": len(seen),
        "warmup_seconds": cfg.latency_warmup_seconds,
        "peak_rss_mb": peak_rss,
        "latency_ms": summary,
    }
    if len(seen) < count:
        raise StalledError(
            f"latency {client} {guarantee} {rate}/s: saw {len(seen)} of {count} outputs"
        )
    log.info(
        "latency on %s, %s at %d/s: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms (%d records)",
        client, guarantee, rate, summary["p50"], summary["p95"], summary["p99"], summary["count"],
    )  # fmt: skip
    return result


def _start_generator(
    ctx: Context, topic: str, rate: int, count: int, *, client: str, guarantee: str
) -> Process:
    return ctx.service(
        "generator",
        f"latency-generator-{client}-{guarantee}-{rate}",
        {
            "KAFKA_CLIENT": client,
            "TRANSACTIONS_TOPIC": topic,
            "TRANSACTIONS_PER_SECOND": str(rate),
            "TRANSACTIONS_COUNT": str(count),
            "RANDOM_SEED": str(ctx.config.seed + rate),
        },
    )


def all_runs(
    ctx: Context, clients: tuple[str, ...], guarantees: tuple[str, ...]
) -> dict[str, dict[str, dict[str, Any]]]:
    """By client, guarantee and rate."""
    return {
        client: {
            guarantee: {
                str(rate): retried(
                    partial(run, ctx, client, guarantee, rate),
                    f"latency {client} {guarantee} {rate}/s",
                )
                for rate in ctx.config.latency_rates
            }
            for guarantee in guarantees
        }
        for client in clients
    }
