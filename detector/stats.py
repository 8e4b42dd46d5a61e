"""The detector's periodic stats line: what it routed in the last interval, and fraud by rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def render_stats(window: Counter[str], seconds: float, rule_names: Sequence[str]) -> str:
    """The stats line: records per verdict in the window, and fraud by rule."""
    total = window["legit"] + window["fraud"] + window["invalid"]
    share = 100 * window["fraud"] / (window["legit"] + window["fraud"] or 1)
    by_rule = ", ".join(f"{rule} {window['rule.' + rule]}" for rule in rule_names)
    return (
        f"detector: {total / seconds:.1f} tx/s legit={window['legit']} fraud={window['fraud']} "
        f"({by_rule}) invalid={window['invalid']} fraud share {share:.1f}%"
    )
