"""6. The velocity rule's state: the detector's memory with a full window, and its restore.

The input is a stream of `velocity_rate` transactions per second of stream time over
`velocity_accounts` accounts, each record's timestamp set by the producer, for
`velocity_stream_seconds` (longer than the 2W of stream time a window holds). The detector with
VELOCITY_WINDOW_SECONDS=W reads it all, and its peak RSS is compared with the amount-only
detector's on the same input. Then a second detector joins the first one's group: it rebuilds the
three windows from the input (from each commit's checkpoint up to the committed offset), and the
restore lines it logs give what was replayed and how long it took.
"""

from __future__ import annotations

import re
import time
from typing import Any

from bench.context import Context, log
from bench.detector_bench import VELOCITY_ENV, timed
from bench.kafka_ops import admin_client, committed, create_topics
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from kafka import KafkaProducer

MAX_TRANSACTIONS = int(VELOCITY_ENV["VELOCITY_MAX_TRANSACTIONS"])  # N of the velocity rows
RESTORED = re.compile(
    r"restored the windows of \S+: offsets (\d+) to (\d+) read, (\d+) transactions of "
    r"(\d+) accounts held, in ([\d.]+)s"
)


def _produce_stream(ctx: Context, topic: str) -> int:
    """The timestamped stream; ends an hour ago (the broker refuses timestamps far ahead)."""
    cfg = ctx.config
    count = round(cfg.velocity_rate * cfg.velocity_stream_seconds)
    start_ms = time.time_ns() // 1_000_000 - 3_600_000 - round(cfg.velocity_stream_seconds * 1000)
    factory = TransactionFactory(cfg.seed, account_pool_size=cfg.velocity_accounts)
    producer = KafkaProducer(
        bootstrap_servers=ctx.bootstrap, linger_ms=20, batch_size=512 * 1024, acks="all"
    )
    try:
        for n in range(count):
            tx = factory.next()
            stamp = start_ms + int(n * 1000 / cfg.velocity_rate)
            producer.send(topic, key=encode_key(tx), value=encode(tx), timestamp_ms=stamp)
        producer.flush(timeout=300)
    finally:
        producer.close()
    return count


def _env(ctx: Context, topic: str, group: str, velocity: bool) -> dict[str, str]:
    env = {
        "TRANSACTIONS_TOPIC": topic,
        "TRANSACTIONS_TOPIC_PARTITIONS": str(ctx.config.partitions),
        "LEGIT_TOPIC": f"{group}.legit",
        "FRAUD_TOPIC": f"{group}.fraud",
        "DEAD_LETTER_TOPIC": f"{group}.invalid",
        "CONSUMER_GROUP": group,
    }
    if velocity:
        env["VELOCITY_MAX_TRANSACTIONS"] = str(MAX_TRANSACTIONS)
        env["VELOCITY_WINDOW_SECONDS"] = f"{ctx.config.velocity_window_seconds:g}"
    return env


def _drain(ctx: Context, topic: str, group: str, velocity: bool, total: int) -> dict[str, Any]:
    label = f"window-{'velocity' if velocity else 'amount'}"
    process = ctx.service("detector", label, _env(ctx, topic, group, velocity))
    with admin_client(ctx.bootstrap) as admin:
        result = timed(ctx, process, lambda: committed(admin, group), label, total)
    return {"rate": result["rate"], "peak_rss_mb": result["peak_rss_mb"]}


def _restore(ctx: Context, topic: str, group: str) -> dict[str, Any]:
    """Start a detector in the drained group and read its restore lines, one per partition."""
    process = ctx.service("detector", "window-restore", _env(ctx, topic, group, True))
    deadline = time.monotonic() + 300
    found: list[tuple[str, ...]] = []
    try:
        while len(found) < ctx.config.partitions:
            if time.monotonic() > deadline or not process.running():
                raise RuntimeError(f"no restore of every partition:\n{process.output_tail()}")
            time.sleep(0.5)
            found = RESTORED.findall(process.output())
    finally:
        process.stop()
    replayed = sum(int(end) - int(start) for start, end, *_ in found)
    seconds = sum(float(s) for *_, s in found)
    result = {
        "partitions": len(found),
        "records_replayed": replayed,
        "transactions_held": sum(int(held) for _, _, held, _, _ in found),
        "accounts_held": sum(int(accounts) for *_, accounts, _ in found),
        "seconds": seconds,
        "seconds_per_100k": seconds / replayed * 100_000 if replayed else None,
    }
    log.info("restore: %s", result)
    return result


def window_state(ctx: Context) -> dict[str, Any]:
    cfg = ctx.config
    topic = ctx.name("velocity-input")
    create_topics(ctx.bootstrap, [topic], cfg.partitions)
    total = _produce_stream(ctx, topic)
    log.info("velocity input: %d records, %g s of stream time", total, cfg.velocity_stream_seconds)
    group = ctx.name("velocity")
    with_rule = _drain(ctx, topic, group, True, total)
    amount_only = _drain(ctx, topic, ctx.name("amount-only"), False, total)
    rss, base = with_rule["peak_rss_mb"], amount_only["peak_rss_mb"]
    return {
        "records": total,
        "rate": cfg.velocity_rate,
        "stream_seconds": cfg.velocity_stream_seconds,
        "accounts": cfg.velocity_accounts,
        "window_seconds": cfg.velocity_window_seconds,
        "max_transactions": MAX_TRANSACTIONS,
        "velocity": with_rule,
        "amount_only": amount_only,
        "window_rss_mb": None if rss is None or base is None else rss - base,
        "restore": _restore(ctx, topic, group),
    }


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} MiB"


def markdown(state: dict[str, Any] | None) -> list[str]:
    if not state:
        return []
    restore = state["restore"]
    per_100k = restore["seconds_per_100k"]
    return [
        "",
        "### Velocity state",
        "",
        f"{state['records']:,} records at {state['rate']:,}/s of stream time over "
        f"{state['accounts']:,} accounts, W = {state['window_seconds']:g} s, "
        f"N = {state['max_transactions']}.",
        "",
        "| what | value |",
        "|---|---:|",
        f"| detector peak RSS, velocity on | {_mib(state['velocity']['peak_rss_mb'])} |",
        f"| detector peak RSS, amount only | {_mib(state['amount_only']['peak_rss_mb'])} |",
        f"| the windows' share | {_mib(state['window_rss_mb'])} |",
        f"| restore: records replayed (3 partitions) | {restore['records_replayed']:,} |",
        f"| restore: transactions / accounts held | {restore['transactions_held']:,} / "
        f"{restore['accounts_held']:,} |",
        f"| restore: time | {restore['seconds']:.2f} s |",
        "| restore: time per 100k records replayed | "
        + ("n/a" if per_100k is None else f"{per_100k:.2f} s")
        + " |",
    ]
