"""9. The hot path: the detector's own per-record stages, timed in-process on the bench's input
(no broker, no client), amount rule only and with the velocity rule on.

  decode     the value's amount (and, with velocity on, its account): the codec's decode
  classify   the rules' state: PartitionRules.classify, less the decode
  headers    Router.outputs, less classify: each record's output topic and headers (fraud.rules,
             a dead letter's), the output tuple, and the batch tally told of it
  json.loads the raw pipe's one parse, for reference: the raw rows do it too

What is left of the detector's CPU per record over the raw pipe's on the same client (the
throughput rows) is the adapter's send and the checkpoint's commit and the loop around them:
the report subtracts these stages from that difference.

`python -m bench.hot_path [--records N]` prints the results as JSON; `make bench` runs it as
its "hot_path" section.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.kafka_ops import encoded_transactions
from detector.config import DetectorSettings
from detector.routing import Router
from fraudcore.checkpoint import BatchTally
from fraudcore.core.codec import decode_amount, decode_source_amount
from fraudcore.kafka.types import ConsumedRecord, Record

REPEATS = 5
# Input timestamps as the preloaded input has them: appended within a few seconds.
RECORDS_PER_MS = 50
EPOCH_MS = 1_800_000_000_000


def _records(count: int, seed: int) -> list[Record]:
    return [
        Record("bench.input", 0, offset, EPOCH_MS + offset // RECORDS_PER_MS, key, value, None)
        for offset, (key, value) in enumerate(encoded_transactions(count, seed))
    ]


def _best_us(run: Callable[[], object], count: int) -> float:
    """The fastest of REPEATS runs, in microseconds per record."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 1e6 * best / count


def _batches(records: list[Record], size: int) -> list[Sequence[ConsumedRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def stages(settings: DetectorSettings, records: list[Record]) -> dict[str, float]:
    """Each stage's cost in microseconds per record, for the rules `settings` make."""
    rule_set, max_bytes, count = settings.rule_set, settings.max_transaction_bytes, len(records)
    values = [r.value for r in records]
    if rule_set.needs_account:
        decode_us = _best_us(lambda: [decode_source_amount(v, max_bytes) for v in values], count)
    else:
        decode_us = _best_us(lambda: [decode_amount(v, max_bytes) for v in values], count)

    def classify_all() -> None:
        classify = rule_set.partition().classify  # a fresh state each run
        for r in records:
            classify(r.value, r.timestamp, r.offset, max_bytes)

    router, batches = Router(settings), _batches(records, settings.max_poll_records)

    def route_all() -> None:
        rules = rule_set.partition()
        for batch in batches:
            router.outputs(batch, BatchTally(), rules)

    classify_us = _best_us(classify_all, count)
    route_us = _best_us(route_all, count)
    return {
        "decode": decode_us,
        "classify": classify_us - decode_us,
        "headers": route_us - classify_us,
        "total": route_us,
    }


def measure(records: int, seed: int) -> dict[str, Any]:
    made = _records(records, seed)
    values = [r.value or b"" for r in made]
    velocity = DetectorSettings(velocity_max_transactions=3, velocity_window_seconds=60)
    return {
        "records": records,
        "amount_only": stages(DetectorSettings(), made),
        "velocity": stages(velocity, made),
        "json_loads": _best_us(lambda: [json.loads(v) for v in values], records),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hot_path", description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.records, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


STAGE_LABELS = {
    "decode": "decode (the codec: amount; with velocity, the account too)",
    "classify": "classify (the rules' state, less the decode)",
    "headers": "headers (output topic, fraud.rules or dead-letter headers, batch tally)",
    "total": "all three stages",
}


def markdown(results: dict[str, Any]) -> list[str]:
    """The detector's CPU per record over the raw pipe's on each client, and what of that the
    stages measured here explain; the rest is the adapter's send, the commit and the loop."""
    stages_ = results.get("hot_path")
    if not stages_:
        return []
    amount = stages_["amount_only"]
    lines = [
        "",
        "### The hot path: our own cost per record on each client",
        "",
        "The detector's CPU time per record (amount rule only) less the raw pipe's on the same "
        "client, from the throughput rows. The raw pipe parses each value once with json.loads; "
        "the detector does not, so the send, commit and loop column is the difference less the "
        "pure stages below plus json.loads.",
        "",
        "| client | guarantee | detector | raw pipe | difference | send, commit, loop |",
        "|---|---|---:|---:|---:|---:|",
    ]
    pipes = (results.get("baselines") or {}).get("raw_pipe") or {}
    for client, by_guarantee in (results.get("detector") or {}).items():
        pipe = (pipes.get(client) or {}).get("cpu_us_per_record")
        for guarantee, row in by_guarantee.items():
            detector = row.get("cpu_us_per_record")
            if detector is None or pipe is None:
                continue
            difference = detector - pipe
            rest = difference - amount["total"] + stages_["json_loads"]
            lines.append(
                f"| {client} | {guarantee} | {detector:.1f} us | {pipe:.1f} us | "
                f"{difference:+.1f} us | {rest:.1f} us |"
            )
    lines += [
        "",
        f"The pure stages, in-process over {stages_['records']:,} of the bench's records (the "
        f"fastest of {REPEATS} runs):",
        "",
        "| stage | amount only | velocity on |",
        "|---|---:|---:|",
    ]
    for key, label in STAGE_LABELS.items():
        lines.append(f"| {label} | {amount[key]:.2f} us | {stages_['velocity'][key]:.2f} us |")
    lines.append(f"| json.loads (the raw pipe's one parse) | {stages_['json_loads']:.2f} us | |")
    return lines
