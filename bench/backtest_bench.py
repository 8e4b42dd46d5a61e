"""10. The backtest's rate on each client: the preloaded input replayed through a rules file
with the amount rule, the detector rows' rule, so the two rates compare like for like.

It runs in-process (detector.backtest.replay_topic, the command's own path less its argument
parsing and broker wait), timed from the first record classified to the last, as the detector
rows are timed from their first commit (its start-up is kept apart): nothing is produced and no
group is joined, which is why it can outrun the live detector.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.context import CLIENTS, Context, best, log
from detector.backtest import replay_topic
from detector.config import DetectorSettings
from fraudcore.core.rule import Classification
from fraudcore.kafka.types import ConsumedRecord

RULES = "rules:\n  - {name: amount, type: amount_above, threshold: 900}\n"


def _once(ctx: Context, input_topic: str, client: str, rules_file: Path) -> dict[str, Any]:
    settings = DetectorSettings(
        kafka_broker_url=ctx.bootstrap,
        transactions_topic=input_topic,
        kafka_client=client,
        rules_file=rules_file,
    )
    first: list[float] = []  # when the first record was classified

    def stamp(_record: ConsumedRecord, _result: Classification) -> None:
        if not first:
            first.append(time.monotonic())

    began = time.monotonic()
    tally = replay_topic(settings, None, 120 + ctx.config.records / 500, stamp)
    seconds = time.monotonic() - first[0]
    if tally.records != ctx.config.records:
        raise RuntimeError(f"backtest on {client} read {tally.records} of {ctx.config.records}")
    return {
        "rate": tally.records / seconds,
        "seconds": seconds,
        "records": tally.records,
        "startup_seconds": first[0] - began,
        "alerts": tally.to_dict()["total"]["alerts"],
    }


def all_runs(ctx: Context, input_topic: str) -> dict[str, Any]:
    """The best of the configured runs on each client."""
    rules_file = ctx.logs / "backtest-rules.yaml"
    rules_file.write_text(RULES)
    out: dict[str, Any] = {}
    for client in CLIENTS:
        runs = [_once(ctx, input_topic, client, rules_file) for _ in range(ctx.config.repeats)]
        out[client] = best(runs)
        log.info("backtest on %s: %.0f records/s", client, out[client]["rate"])
    return out
