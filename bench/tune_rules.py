"""Tune a rules file without a broker: the generator's realistic profile with every scenario,
replayed in-process through the backtest's own core (detector/backtest.py `replay`).

    python -m bench.tune_rules --rules rules/example.yaml [--records N] [--rate R]
        [--pool P] [--seed S] [--scenarios card_testing:0.01,...] [--json]

The records and labels are the generator's for the same RANDOM_SEED, ACCOUNT_POOL_SIZE and
FRAUD_SCENARIOS (fraudcore/core/scenarios.py). Kafka would stamp them with the producer's clock
at a paced rate; here record n is stamped start + n * 1000 / rate ms, the generator's schedule
without its jitter. Records are spread over 3 partitions by their key; every rule state is per
account, so which partition an account lands in does not change its verdicts. The figures of
record for docs/rules.md come from the real backtest on a real broker; this is for exploring.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from detector.backtest import render, replay
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.rules.file import RulesFileError, load_rules
from fraudcore.core.scenarios import LABEL_HEADER, RealisticSource, parse_scenarios
from fraudcore.kafka.types import Record

ALL_SCENARIOS = "card_testing:0.01,account_takeover:0.005,velocity_burst:0.005,big_ticket:0.005"
START_MS = 1_800_000_000_000
PARTITIONS = 3
TOPIC = "tune.transactions"


def records(
    count: int, rate: float, pool: int, seed: int, scenarios: dict[str, float]
) -> Iterator[Record]:
    """The generator's realistic records, stamped on its schedule, with their labels."""
    source = RealisticSource(seed, clock=lambda: "", account_pool_size=pool, scenarios=scenarios)
    labels = {name: [(LABEL_HEADER, name.encode())] for name in source.scenario_names}
    offsets = [0] * PARTITIONS
    for n in range(count):
        tx, label = source.next()
        key = encode_key(tx)
        partition = zlib.crc32(key) % PARTITIONS
        offset = offsets[partition]
        offsets[partition] += 1
        yield Record(
            TOPIC,
            partition,
            offset,
            START_MS + int(n * 1000 / rate),
            key,
            encode(tx),
            [] if label is None else labels[label],
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_rules", description=__doc__)
    parser.add_argument("--rules", required=True, type=Path)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="records per second")
    parser.add_argument("--pool", type=int, default=100_000, help="ACCOUNT_POOL_SIZE")
    parser.add_argument("--seed", type=int, default=42, help="RANDOM_SEED")
    parser.add_argument("--scenarios", default=ALL_SCENARIOS, help="FRAUD_SCENARIOS")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rule_set = load_rules(args.rules)
        scenarios = parse_scenarios(args.scenarios)
    except (RulesFileError, ValueError) as exc:
        print(f"tune_rules: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    stream = records(args.records, args.rate, args.pool, args.seed, scenarios)
    report = replay(stream, rule_set).to_dict()
    took = time.perf_counter() - began
    print(json.dumps(report) if args.json else render(report, args.rules, TOPIC))
    print(
        f"({args.records} records, seed {args.seed}, pool {args.pool}, {took:.1f}s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
