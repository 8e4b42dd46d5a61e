"""`python -m bench [--quick]`: the whole benchmark in one command, on a broker of its own."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    backtest_bench,
    detector_bench,
    generator_bench,
    hot_path,
    latency,
    machine,
    report,
    rules_bench,
    scaling,
    velocity_bench,
)
from bench.baselines import consumer_performance, producer_performance
from bench.broker import LocalBroker
from bench.chart import chart
from bench.config import QUICK, BenchConfig
from bench.context import CLIENTS, Context, environment_client, log
from bench.kafka_ops import create_topics, encoded_transactions
from bench.procs import stop_all
from bench.targets import targets
from devtools.broker import REPO_ROOT

SECTIONS = (
    "generator",
    "detector",
    "kafka_tools",
    "latency",
    "velocity",
    "rules",
    "scaling",
    "hot_path",
    "backtest",
)
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
DOCS = REPO_ROOT / "docs" / "performance.md"
CHART_COPY = REPO_ROOT / "bench" / "bench-full.png"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_const",
        const=True,
        default=None,
        help="the short run (under ~2 minutes); also BENCH_QUICK=1",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="multiply record counts and durations (BENCH_SCALE); for tests of the bench itself",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the Quix Streams and confluent-kafka reference rows (default: full runs only; "
        "they need the venv `make bench` installs)",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--docs",
        action="store_true",
        help=f"also write the report into {DOCS.relative_to(REPO_ROOT)}'s generated section and "
        f"the chart to {CHART_COPY.relative_to(REPO_ROOT)} (make bench does, in a full run)",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="use this running broker instead of starting one (its topics are left behind)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    return parser.parse_args(argv)


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every child process and the broker are stopped."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handle)


class BenchError(RuntimeError):
    """A measurement failed: the first line of why, for the run's last log line (the full
    error, with the processes' output tails, is logged before it)."""


def measure(ctx: Context, sections: set[str]) -> dict[str, Any]:
    cfg = ctx.config
    results: dict[str, Any] = {}
    input_topic = ctx.name("input")
    # The raw producer's (first) run preloads the input that the detector and the baselines read.
    if "generator" in sections:
        raw, unthrottled = generator_bench.producers(ctx, input_topic)
        results["generator"] = {
            "client": environment_client(),
            "raw_producer": raw,
            "unthrottled": unthrottled,
            "paced": generator_bench.paced_rates(ctx),
        }
    elif sections & {"detector", "backtest"}:
        generator_bench.raw_producer(ctx, input_topic)
    if "detector" in sections:
        results.update(detector_bench.consumers(ctx, input_topic))
    if "kafka_tools" in sections:
        payloads = ctx.logs / "payloads.txt"
        payloads.write_bytes(b"\n".join(v for _, v in encoded_transactions(1000, cfg.seed)) + b"\n")
        perf_topic = ctx.name("producer-performance")
        create_topics(ctx.bootstrap, [perf_topic], cfg.partitions)
        baselines = results.setdefault("baselines", {})
        baselines["producer_performance"] = producer_performance(
            ctx.bootstrap, perf_topic, cfg.perf_records, payloads
        )
        log.info("ProducerPerformance: %.0f records/s", baselines["producer_performance"]["rate"])
        baselines["consumer_performance"] = consumer_performance(
            ctx.bootstrap, perf_topic, cfg.perf_records
        )
        log.info("ConsumerPerformance: %.0f records/s", baselines["consumer_performance"]["rate"])
    if "velocity" in sections:
        results["velocity_state"] = velocity_bench.window_state(ctx)
    if "latency" in sections:
        results["latency"] = latency.all_runs(ctx, CLIENTS, detector_bench.GUARANTEES)
    if "scaling" in sections:
        results["scaling"] = scaling.all_runs(ctx)
    if "rules" in sections:
        results["rules_state"] = rules_bench.measure(quick=cfg.mode == QUICK)
    if "hot_path" in sections:
        results["hot_path"] = hot_path.measure(cfg.hot_path_records, cfg.seed)
    if "backtest" in sections:
        results["backtest"] = backtest_bench.all_runs(ctx, input_topic)
    if memory := _memory(results):
        results["memory"] = memory
    return results


def _memory(results: dict[str, Any]) -> dict[str, Any] | None:
    """The detector's peak RSS in each run that measured it, and the highest."""
    by_run = {
        f"throughput, {client}, {g}{label}": results[key][client][g]["peak_rss_mb"]
        for key, label in (("detector", ""), ("detector_velocity", ", velocity on"))
        if key in results
        for client in CLIENTS
        for g in detector_bench.GUARANTEES
    }
    for client, by_guarantee in (results.get("latency") or {}).items():
        for guarantee, by_rate in by_guarantee.items():
            for rate, run in by_rate.items():
                by_run[f"latency, {client}, {guarantee}, {int(rate):,}/s"] = run["peak_rss_mb"]
    measured = [mb for mb in by_run.values() if mb is not None]
    if not measured:
        return None
    return {"detector_peak_rss_mb": max(measured), "by_run": by_run}


def _measure(ctx: Context, sections: set[str]) -> dict[str, Any]:
    try:
        return measure(ctx, sections)
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise BenchError(f"failed: {type(exc).__name__}: {first}") from exc
    finally:
        stop_all()  # before the broker goes: children still running after an error or Ctrl-C


def write_results(results: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """The run's results as JSON, its report as Markdown and its chart as PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stem}.json",
        "markdown": out_dir / f"{stem}.md",
        "chart": out_dir / f"{stem}.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["markdown"].write_text(report.markdown(results))
    chart(results, paths["chart"])
    return paths


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s bench: %(message)s", stream=sys.stderr
    )
    logging.getLogger("kafka").setLevel(logging.ERROR)
    config = BenchConfig.from_env(args.quick, args.scale, args.reference)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := sections - set(SECTIONS):
        print(f"bench: unknown section(s) {sorted(unknown)}; use {SECTIONS}", file=sys.stderr)
        return 2
    out_dir = (args.out or DEFAULT_OUT).resolve()
    logs = out_dir / f"logs-{config.mode}"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    _stop_on_sigterm()
    started = time.monotonic()
    meta: dict[str, Any] = {
        "mode": config.mode,
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.as_dict(),
        "sections": sorted(sections),
        "machine": machine.describe(),
        "load_average_start": machine.load_average(),
    }
    log.info("%s run: %s", config.mode, config.as_dict())
    try:
        if args.bootstrap:
            results = _measure(Context(args.bootstrap, config, logs), sections)
        else:
            with LocalBroker(log=logs / "broker.log") as broker:
                log.info("broker up at %s (data dir %s)", broker.bootstrap, broker.data_dir)
                results = _measure(Context(broker.bootstrap, config, logs), sections)
            log.info("broker stopped, data dir removed")
    except KeyboardInterrupt:
        log.error("interrupted; the broker and every child process were stopped")
        return 130
    except BenchError as failed:
        # The whole error (with the processes' output tails) first, its one-line summary last:
        # the end of the output is what a caller keeps.
        log.error("%s", failed.__cause__)
        log.error("bench: %s", failed)
        return 1
    meta["load_average_end"] = machine.load_average()
    meta["duration_seconds"] = round(time.monotonic() - started, 1)
    results = {"meta": meta, **results}
    results["targets"] = targets(results)
    paths = write_results(results, out_dir, f"bench-{config.mode}")
    if args.docs:
        report.update_docs(results, DOCS, paths["chart"], CHART_COPY)
        paths["docs"] = DOCS
    print(report.markdown(results))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
