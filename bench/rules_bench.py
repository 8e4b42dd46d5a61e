"""7. The rules' own costs, in the pure core (no broker): the amount_spike store's memory and
restore at many accounts, the changelog bytes it writes per transaction, and each rule's cost
per record on the bench's input.

`python -m bench.rules_bench [--quick]` prints the results as JSON; `make bench` runs it as its
"rules" section. The store is measured in a child process per size, so that its peak RSS
(VmHWM) is its own: the store is filled the way a restore fills it, from changelog values.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

from fraudcore.core.codec import encode
from fraudcore.core.model import TransactionFactory
from fraudcore.core.rules.file import parse_rules
from fraudcore.core.rules.ruleset import RuleSet

HISTORY = 20
STORE_SIZES = (100_000, 1_000_000)
RECORDS = 100_000
BATCH = 500  # records per batch: the changelog is written once per batch per changed account
RATE = 1000  # stream time: records per second

RULES: dict[str, dict[str, Any]] = {
    "amount": {"type": "amount_above", "threshold": Decimal(900)},
    "velocity": {"type": "count_in_window", "max_transactions": 3, "window_seconds": 10},
    "spike": {"type": "amount_spike", "history": HISTORY, "min_history": 5, "z": 4},
    "daily_total": {"type": "sum_in_window", "max_amount": 5000, "window_seconds": 3600},
}


def rule_set(*names: str) -> RuleSet:
    return parse_rules({"rules": [{"name": n, **RULES[n]} for n in names]}, "bench")


def _vm_hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def store(accounts: int) -> dict[str, float]:
    """A spike store of `accounts` accounts at history 20, loaded from changelog values."""
    state = rule_set("spike").partition().changelog_states()[0][1]
    rng = random.Random(1)
    before = _vm_hwm_mb()
    loading = value_bytes = 0.0
    for start in range(0, accounts, 10_000):
        chunk = [
            (
                f"{n:08d}",
                " ".join(
                    map(
                        str, (1_800_000_000_000, 2, *(rng.randint(100, 100_000) for _ in range(20)))
                    )
                ).encode(),
            )
            for n in range(start, min(start + 10_000, accounts))
        ]
        value_bytes += sum(len(key) + len(value) for key, value in chunk)
        began = time.perf_counter()
        for key, value in chunk:
            state.load(key, value)
        loading += time.perf_counter() - began
    assert len(state) == accounts
    return {
        "accounts": accounts,
        "store_mb": _vm_hwm_mb() - before,
        "peak_rss_mb": _vm_hwm_mb(),
        "restore_seconds": loading,
        "changelog_mb_compacted": value_bytes / 2**20,
    }


def _stream(accounts: int) -> list[tuple[bytes, int]]:
    factory = TransactionFactory(seed=7, account_pool_size=accounts)
    start = 1_800_000_000_000
    return [(encode(factory.next()), start + n * 1000 // RATE) for n in range(RECORDS)]


def changelog_bytes(accounts: int) -> dict[str, float]:
    """Bytes of changelog records (key and value) per valid transaction, batch by batch."""
    records = _stream(accounts)
    rules = rule_set("spike").partition()
    state = rules.changelog_states()[0][1]
    written = count = 0
    for start in range(0, len(records), BATCH):
        for offset, (value, stamp) in enumerate(records[start : start + BATCH], start):
            rules.classify(value, stamp, offset)
        changes = state.changes()
        count += len(changes)
        written += sum(len(key) + len(value or b"") for key, value in changes)
    return {
        "accounts": accounts,
        "bytes_per_transaction": written / len(records),
        "records_per_transaction": count / len(records),
    }


def per_rule_cost() -> dict[str, dict[str, float]]:
    """Records per second through classify() for amount alone, amount with each other rule, and
    all four, on the bench's input (1000 accounts, 1000/s of stream time)."""
    records = _stream(1000)
    sets: dict[str, tuple[str, ...]] = {"amount": ("amount",)}
    sets |= {f"amount+{name}": ("amount", name) for name in RULES if name != "amount"}
    sets["all four"] = tuple(RULES)
    out: dict[str, dict[str, float]] = {}
    for label, names in sets.items():
        rules = rule_set(*names).partition()
        classify = rules.classify
        began = time.perf_counter()
        for offset, (value, stamp) in enumerate(records):
            classify(value, stamp, offset)
        rate = len(records) / (time.perf_counter() - began)
        out[label] = {"records_per_second": rate}
    base = out["amount"]["records_per_second"]
    for row in out.values():
        row["relative_to_amount"] = row["records_per_second"] / base
    return out


def measure(quick: bool = False) -> dict[str, Any]:
    sizes = STORE_SIZES[:1] if quick else STORE_SIZES
    stores = []
    for accounts in sizes:
        child = subprocess.run(
            [sys.executable, "-m", "bench.rules_bench", "--store", str(accounts)],
            capture_output=True,
            text=True,
            check=True,
        )
        stores.append(json.loads(child.stdout))
    return {
        "spike_store": stores,
        "changelog": [changelog_bytes(a) for a in (1000, 100_000)],
        "per_rule_cost": per_rule_cost(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_bench")
    parser.add_argument("--quick", action="store_true", help="the store at 100,000 accounts only")
    parser.add_argument("--store", type=int, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    result = store(args.store) if args.store else measure(args.quick)
    print(json.dumps(result, indent=None if args.store else 2))


if __name__ == "__main__":
    main()
