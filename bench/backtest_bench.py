"""10. The backtest's rate on each client: the preloaded input replayed through a rules file
with the amount rule, the detector rows' rule, so the two rates compare like for like.

It runs in-process (detector.backtest.replay_topic, the command's own path less its start-up
and broker wait), timed from the reader's creation to the last record counted: nothing is
produced and no group is joined, which is why it can outrun the live detector.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.context import CLIENTS, Context, best, log
from detector.backtest import replay_topic
from detector.config import DetectorSettings

RULES = "rules:\n  - {name: amount, type: amount_above, threshold: 900}\n"


def _once(ctx: Context, input_topic: str, client: str, rules_file: Path) -> dict[str, Any]:
    settings = DetectorSettings(
        kafka_broker_url=ctx.bootstrap,
        transactions_topic=input_topic,
        kafka_client=client,
        rules_file=rules_file,
    )
    began = time.monotonic()
    tally = replay_topic(settings, None, timeout=120 + ctx.config.records / 500)
    seconds = time.monotonic() - began
    if tally.records != ctx.config.records:
        raise RuntimeError(f"backtest on {client} read {tally.records} of {ctx.config.records}")
    return {
        "rate": tally.records / seconds,
        "seconds": seconds,
        "records": tally.records,
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
