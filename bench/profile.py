"""Where the detector's time goes: py-spy on the real detector process over a preloaded topic.

`python -m bench.profile [--guarantee exactly_once|at_least_once] [--records N] [--all-threads]`

Starts a broker of its own (as `python -m bench` does), preloads N transactions, runs
`python -m detector` under `py-spy record` until its committed offsets reach the end, stops it
with SIGTERM, and writes bench/results/profile-<guarantee>.txt (py-spy's collapsed stacks, one
line per stack: feed them to flamegraph.pl or speedscope) and profile-<guarantee>.md (the share of
samples per stage of the loop and the hottest functions). By default only the thread holding the
GIL is sampled (`--gil`): in one Python process that is the CPU the loop competes for.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path

from bench.broker import LocalBroker
from bench.config import BenchConfig
from bench.context import Context, log
from bench.generator_bench import raw_producer
from bench.kafka_ops import admin_client, committed, watch
from bench.procs import Process, service_env, stop_all
from devtools.broker import REPO_ROOT

# Stage of the detector's loop -> a frame that marks it (the first match, in this order, wins).
STAGES = [
    (
        "classify: codec (layout match, else strict decode), rule",
        "classify (fraudcore/core/rule.py)",
    ),
    ("producer.send: partitioner, record batch, future", "KafkaProducer.send "),
    ("consumer.poll: fetch response, record batch decoding", "KafkaConsumer.poll "),
    ("commit: flush / Kafka transaction / offsets", "Detector.commit "),
    ("metrics (fraudcore/metrics.py)", "DetectorMetrics."),
    ("stats line", "StatsLine."),
    ("producer I/O thread (kafka-python sender)", "Sender.run "),
    ("network I/O thread (kafka-python selector)", "NetworkSelector.run_forever"),
    ("start-up: imports", "_find_and_load"),
    ("Detector._route itself (headers, dict lookups, callbacks)", "Detector._route "),
    ("Detector.poll_once itself", "Detector.poll_once "),
]


def _function(frame: str) -> str:
    """'f (path.py:123)' -> 'f (path.py)': samples of one function on any line add up."""
    return re.sub(r" \(([^:()]*):\d+\)$", r" (\1)", frame)


def summarize(collapsed: Path, top: int = 25) -> str:
    stages: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")[1:]]  # [0] is the thread
        total += n
        joined = ";".join(frames)
        stage = next((name for name, marker in STAGES if marker in joined), "other")
        stages[stage] += n
        if frames:
            leaf[frames[-1]] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "| stage | share of samples |", "|---|---:|"]
    lines += [f"| {name} | {100 * n / total:.1f}% |" for name, n in stages.most_common()]
    lines += ["", "| function (self time) | share |", "|---|---:|"]
    lines += [f"| `{name}` | {100 * n / total:.1f}% |" for name, n in leaf.most_common(top)]
    return "\n".join(lines) + "\n"


def profile(ctx: Context, guarantee: str, all_threads: bool, out_dir: Path) -> Path:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise RuntimeError("py-spy is not installed (pip install -r requirements-dev.txt)")
    input_topic = ctx.name("profile-input")
    raw_producer(ctx, input_topic)
    group = ctx.name(f"profile-{guarantee}")
    collapsed = out_dir / f"profile-{guarantee}.txt"
    env = service_env(
        {
            "KAFKA_BROKER_URL": ctx.bootstrap,
            "TRANSACTIONS_TOPIC": input_topic,
            "LEGIT_TOPIC": f"{group}.legit",
            "FRAUD_TOPIC": f"{group}.fraud",
            "DEAD_LETTER_TOPIC": f"{group}.invalid",
            "CONSUMER_GROUP": group,
            "PROCESSING_GUARANTEE": guarantee,
        }
    )
    args = [py_spy, "record", "--rate", "250", "--format", "raw", "-o", str(collapsed)]
    if not all_threads:
        args.append("--gil")
    spy = Process([*args, "--", sys.executable, "-m", "detector"], env, ctx.logs / "py-spy.log")
    try:
        with admin_client(ctx.bootstrap) as admin:
            progress = watch(lambda: committed(admin, group), ctx.config.records, 600, spy.running)
        if not progress.finished:
            raise RuntimeError(f"the detector did not finish:\n{spy.output_tail()}")
        log.info("detector %s under py-spy: %.0f records/s", guarantee, progress.rate())
        for child in Path(f"/proc/{spy.pid}/task/{spy.pid}/children").read_text().split():
            signal_detector(int(child))
        spy.wait(60)  # py-spy writes its output once the detector has exited
    finally:
        stop_all()
    return collapsed


def signal_detector(pid: int) -> None:
    """SIGTERM py-spy's child if it is the detector: it commits, exits, and py-spy writes."""
    try:
        is_detector = b"detector" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if is_detector:
        os.kill(pid, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--guarantee", choices=["exactly_once", "at_least_once"], default=None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--all-threads", action="store_true", help="not only the GIL holder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    config = dataclasses.replace(BenchConfig.create(quick=True), records=args.records)
    out_dir = args.out.resolve()
    logs = out_dir / "logs-profile"
    logs.mkdir(parents=True, exist_ok=True)
    guarantees = [args.guarantee] if args.guarantee else ["at_least_once", "exactly_once"]
    with LocalBroker(log=logs / "broker.log") as broker:
        ctx = Context(broker.bootstrap, config, logs)
        for guarantee in guarantees:
            collapsed = profile(ctx, guarantee, args.all_threads, out_dir)
            summary = summarize(collapsed)
            report = out_dir / f"profile-{guarantee}.md"
            report.write_text(f"## detector, {guarantee}\n\n{summary}")
            print(f"## detector, {guarantee}\n\n{summary}\nstacks: {collapsed}\nsummary: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
