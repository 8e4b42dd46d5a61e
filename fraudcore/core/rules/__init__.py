"""The rule types, by the name a rules file gives them (`type:`).

Adding a rule type is one module in this package (its settings, and its state if it needs one:
fraudcore/core/rules/base.py), one line below, a plain implementation in detector/reference.py,
and its tests (docs/rules.md, "Add a rule type").
"""

from __future__ import annotations

from fraudcore.core.rules.amount_above import AmountAbove
from fraudcore.core.rules.amount_out_of_range import AmountOutOfRange
from fraudcore.core.rules.amount_spike import AmountSpike
from fraudcore.core.rules.base import Rule
from fraudcore.core.rules.count_in_window import CountInWindow
from fraudcore.core.rules.sum_in_window import SumInWindow

__all__ = [
    "RULE_TYPES",
    "AmountAbove",
    "AmountOutOfRange",
    "AmountSpike",
    "CountInWindow",
    "Rule",
    "SumInWindow",
]

RULE_TYPES: dict[str, type[Rule]] = {
    "amount_above": AmountAbove,
    "count_in_window": CountInWindow,
    "sum_in_window": SumInWindow,
    "amount_spike": AmountSpike,
    "amount_out_of_range": AmountOutOfRange,
}
