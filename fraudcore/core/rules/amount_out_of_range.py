"""amount_out_of_range: the amount is far outside the range of the account's own recent ones.

Per source account within the input partition, in offset order, the amounts of its last
`history` valid transactions before this one are kept (fraudcore/core/rules/history.py: every
valid transaction joins them, fired or not; a changelog keeps them; an idle account starts
afresh). The rule fires when there are at least `min_history` of them and the amount is above
`factor` times the largest, or below the smallest divided by `factor`: a payment many times
larger than any the account made lately (a taken-over account emptied), or many times smaller
(a stolen card tried with a tiny amount). Exactly `factor` times does not fire.

Unlike amount_spike it needs no spread, so a history of one payment already judges: the
range of an account's steady habits is narrow, while a standard deviation from a few amounts
is noise. The comparison is in integers (the amounts are whole units of 10^-scale).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import Field

from fraudcore.core.rules.base import ChangelogState
from fraudcore.core.rules.history import Histories, History, HistoryRule


class _Ranges(Histories):
    """The account histories, judged by their smallest and largest amounts."""

    __slots__ = ("_den", "_num")

    def __init__(self, rule: AmountOutOfRange) -> None:
        super().__init__(rule.history, rule.min_history, rule.idle_days)
        factor = Fraction(rule.factor)
        self._num, self._den = factor.numerator, factor.denominator

    def judge(self, held: History, units: int) -> bool:
        amounts = held.amounts
        num, den = self._num, self._den
        # amount > factor * largest, or amount * factor < smallest
        return units * den > num * max(amounts) or units * num < den * min(amounts)


class AmountOutOfRange(HistoryRule):
    type: Literal["amount_out_of_range"] = "amount_out_of_range"
    factor: Decimal = Field(gt=1, allow_inf_nan=False)

    def new_state(self) -> ChangelogState:
        return _Ranges(self)
