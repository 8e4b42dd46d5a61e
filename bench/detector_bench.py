"""2./3./5. The detector's throughput on each client (KAFKA_CLIENT), in each guarantee (amount
rule only, and with the velocity rule on) and its peak RSS, against the raw pipe on the same
client, and the reference rows: the naive detector, a Quix Streams app and a plain
confluent-kafka loop (bench/reference.py), all on the same preloaded input.

Each consumer runs as a process in a fresh consumer group and is timed from outside, from the
first moment the group has committed anything until its committed offsets reach the end of the
input: every output of every input record is then durable (committed in the same Kafka
transaction in exactly_once; acknowledged before the offsets were committed in at_least_once and
in the raw pipe and the reference rows). The naive detector auto-commits offsets regardless of
its sends, so it is timed by its outputs instead: until the legit and fraud topics hold one record
per input.

Where the outputs are plain records (at_least_once: no transaction markers in the offsets), the
legit and fraud topics' record counts are kept with the result: a check that a reference app
routes as the detector does, and what share the velocity rule flagged. The preloaded input is
stamped by the broker (LogAppendTime) within the few seconds the preload takes, so a velocity
window of VELOCITY_WINDOW_SECONDS=60 holds every earlier record of the account's partition.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from bench.context import CLIENTS, Context, best, log
from bench.generator_bench import last_json
from bench.kafka_ops import (
    admin_client,
    committed,
    create_topics,
    encoded_transactions,
    end_offsets,
    watch,
)
from bench.procs import Process
from bench.reference import KINDS, reference_python
from detector.config import DetectorSettings
from fraudcore.core.rule import DEFAULT_THRESHOLD

GUARANTEES = ("at_least_once", "exactly_once")
# The velocity row: the detector with its velocity rule on (on top of the amount rule).
VELOCITY_ENV = {"VELOCITY_MAX_TRANSACTIONS": "3", "VELOCITY_WINDOW_SECONDS": "60"}
REFERENCE_LABELS = {"quix": "Quix Streams", "confluent": "confluent-kafka loop"}


class StalledError(RuntimeError):
    """A consumer made no progress (see the process log); the run is tried once more."""


def timed(
    ctx: Context,
    process: Process,
    read: Callable[[], int],
    what: str,
    target: int | None = None,
) -> dict[str, Any]:
    """Time `process` until `read()` (its group's committed offsets) reaches `target`, by
    default the preloaded input's size; then stop it. Raises StalledError if it does not."""
    target = ctx.config.records if target is None else target
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
    if progress.from_start():
        result["timed_from_start"] = True  # one commit held the whole input: start-up counted
    log.info("%s: %.0f records/s, %s", what, result["rate"], _cpu(result))
    return result


def retried(run: Callable[[], dict[str, Any]], what: str) -> dict[str, Any]:
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


def _detector_what(client: str, guarantee: str, velocity: bool) -> str:
    return f"detector on {client}, {guarantee}{', velocity on' if velocity else ''}"


def detector(
    ctx: Context, input_topic: str, client: str, guarantee: str, run: int, *, velocity: bool = False
) -> dict[str, Any]:
    what = _detector_what(client, guarantee, velocity)
    return retried(
        lambda: _detector(ctx, input_topic, client, guarantee, run, velocity=velocity), what
    )


def raw_pipe(ctx: Context, input_topic: str, client: str, run: int) -> dict[str, Any]:
    return retried(lambda: _raw_pipe(ctx, input_topic, client, run), f"raw pipe on {client}")


def naive(ctx: Context, input_topic: str, run: int) -> dict[str, Any]:
    return retried(lambda: _naive(ctx, input_topic, run), "naive detector")


def reference(
    ctx: Context, input_topic: str, kind: str, guarantee: str, run: int
) -> dict[str, Any]:
    what = f"{REFERENCE_LABELS[kind]} {guarantee}"
    return retried(lambda: _reference(ctx, input_topic, kind, guarantee, run), what)


def _outputs(ctx: Context, legit: str, fraud: str) -> dict[str, int]:
    """The record counts of an at_least_once run's output topics (no transaction markers)."""
    with admin_client(ctx.bootstrap) as admin:
        partitions = ctx.config.partitions
        return {
            "legit": end_offsets(admin, [legit], partitions),
            "fraud": end_offsets(admin, [fraud], partitions),
        }


def detector_env(
    input_topic: str, group: str, client: str, guarantee: str, partitions: int
) -> dict[str, str]:
    """A detector's settings in the bench: its client, guarantee and topics of its own."""
    return {
        "KAFKA_CLIENT": client,
        "TRANSACTIONS_TOPIC": input_topic,
        "TRANSACTIONS_TOPIC_PARTITIONS": str(partitions),
        "LEGIT_TOPIC": f"{group}.legit",
        "FRAUD_TOPIC": f"{group}.fraud",
        "DEAD_LETTER_TOPIC": f"{group}.invalid",
        "CONSUMER_GROUP": group,
        "PROCESSING_GUARANTEE": guarantee,
    }


def _detector(
    ctx: Context, input_topic: str, client: str, guarantee: str, run: int, *, velocity: bool
) -> dict[str, Any]:
    suffix = "-velocity" if velocity else ""
    group = ctx.name(f"detector-{client}-{guarantee}{suffix}")
    legit, fraud = f"{group}.legit", f"{group}.fraud"
    process = ctx.service(
        "detector",
        f"detector-{client}-{guarantee}{suffix}-{run}",
        {
            **detector_env(input_topic, group, client, guarantee, ctx.config.partitions),
            **(VELOCITY_ENV if velocity else {}),
        },
    )
    what = _detector_what(client, guarantee, velocity)
    with admin_client(ctx.bootstrap) as admin:
        result = timed(ctx, process, lambda: committed(admin, group), what)
    if velocity:
        result["env"] = VELOCITY_ENV
    if guarantee == "at_least_once":
        result["outputs"] = _outputs(ctx, legit, fraud)
    return result


def _reference(
    ctx: Context, input_topic: str, kind: str, guarantee: str, run: int
) -> dict[str, Any]:
    group = ctx.name(f"{kind}-{guarantee}")
    legit, fraud = f"{group}.legit", f"{group}.fraud"
    create_topics(ctx.bootstrap, [legit, fraud], ctx.config.partitions)
    # The detector's own defaults, so that every consumer commits alike.
    defaults = DetectorSettings.model_fields
    state_dir = ctx.logs / f"quix-state-{group}"
    label = f"{kind}-{guarantee}-{run}"
    process = ctx.reference(
        kind,
        label,
        [
            "--topic", input_topic,
            "--group", group,
            "--legit", legit,
            "--fraud", fraud,
            "--guarantee", guarantee,
            "--threshold", str(DEFAULT_THRESHOLD),
            "--commit-interval-ms", str(defaults["commit_interval_ms"].default),
            "--max-poll-records", str(defaults["max_poll_records"].default),
            "--state-dir", str(state_dir),
        ],
    )  # fmt: skip
    try:
        with admin_client(ctx.bootstrap) as admin:
            what = f"{REFERENCE_LABELS[kind]} {guarantee}"
            result = timed(ctx, process, lambda: committed(admin, group), what)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    if guarantee == "at_least_once":
        result["outputs"] = _outputs(ctx, legit, fraud)
    return result


def _raw_pipe(ctx: Context, input_topic: str, client: str, run: int) -> dict[str, Any]:
    group = ctx.name(f"pipe-{client}")
    output = f"{group}.out"
    create_topics(ctx.bootstrap, [output], ctx.config.partitions)
    process = ctx.baseline(
        "pipe",
        f"raw-pipe-{client}-{run}",
        ["--topic", input_topic, "--group", group, "--output", output],
        {"KAFKA_CLIENT": client},
    )
    with admin_client(ctx.bootstrap) as admin:
        return timed(ctx, process, lambda: committed(admin, group), f"raw pipe on {client}")


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
        result = timed(
            ctx, process, lambda: end_offsets(admin, [legit, fraud], partitions), "naive detector"
        )
    result["outputs"] = _outputs(ctx, legit, fraud)
    return result


def reference_versions(ctx: Context) -> dict[str, Any]:
    """The reference venv's package versions, or why the reference rows are not run."""
    if not ctx.config.reference:
        return {"skipped": f"not run in a {ctx.config.mode} run (--reference runs them)"}
    python = reference_python()
    if not python.exists():
        reason = f"{python} not found (`make bench` installs bench/requirements.txt there)"
        log.warning("reference rows skipped: %s", reason)
        return {"skipped": reason}
    done = subprocess.run(
        [str(python), "-m", "bench.reference", "versions"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        reason = f"{python} -m bench.reference versions failed: {done.stderr.strip()[-500:]}"
        log.warning("reference rows skipped: %s", reason)
        return {"skipped": reason}
    interval = DetectorSettings.model_fields["commit_interval_ms"].default
    return {"versions": last_json(done.stdout), "commit_interval_ms": interval}


def expected_outputs(ctx: Context) -> dict[str, int]:
    """What the amount rule makes of the preloaded input (the raw producer's records)."""
    threshold = float(DEFAULT_THRESHOLD)
    records = encoded_transactions(ctx.config.records, ctx.config.seed)
    fraud = sum(json.loads(value)["amount"] > threshold for _, value in records)
    return {"legit": len(records) - fraud, "fraud": fraud}


def _check_routing(name: str, row: dict[str, Any], expected: dict[str, int]) -> None:
    outputs = row.get("outputs")
    if outputs is not None:
        row["routing_as_expected"] = outputs == expected
        if outputs != expected:
            log.warning("%s: outputs %s, the amount rule gives %s", name, outputs, expected)


def consumers(ctx: Context, input_topic: str) -> dict[str, Any]:
    """Every consumer `repeats` times, interleaved so that a noisy spell hits all of them alike:
    the raw pipe on each client; then in each guarantee, on each client the detector and the
    detector with velocity on, then the reference apps. Keyed by client under "detector",
    "detector_velocity" and "baselines.raw_pipe"."""
    info = reference_versions(ctx)
    kinds = () if "skipped" in info else KINDS
    runs: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def add(key: tuple[str, ...], sample: dict[str, Any]) -> None:
        runs.setdefault(key, []).append(sample)

    for run in range(1, ctx.config.repeats + 1):
        for client in CLIENTS:
            add(("baselines", "raw_pipe", client), raw_pipe(ctx, input_topic, client, run))
        for guarantee in GUARANTEES:
            for client in CLIENTS:
                add(
                    ("detector", client, guarantee),
                    detector(ctx, input_topic, client, guarantee, run),
                )
                add(
                    ("detector_velocity", client, guarantee),
                    detector(ctx, input_topic, client, guarantee, run, velocity=True),
                )
            for kind in kinds:
                add(
                    ("reference", kind, guarantee),
                    reference(ctx, input_topic, kind, guarantee, run),
                )
        add(("baselines", "naive"), naive(ctx, input_topic, run))
    expected = expected_outputs(ctx)
    out: dict[str, Any] = {"reference": info}
    for key, samples in runs.items():
        node = out
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = row = best(samples)
        if key[0] != "detector_velocity":
            _check_routing(" ".join(key), row, expected)
    out["expected_outputs"] = expected
    return out
