"""amount_spike: the amount is far above the account's own usual.

Per source account within the input partition, in offset order, the amounts of its last
`history` valid transactions before this one are kept (fraudcore/core/rules/history.py: every
valid transaction joins them, fired or not; a changelog keeps them; an idle account starts
afresh). The rule fires when there are at least `min_history` of them and
amount > mean + z * sigma, sigma being their population standard deviation (dividing by n).

Exactly, without a square root: with n amounts of sum S and sum of squares Q, mean = S/n and
n^2 sigma^2 = nQ - S^2, so the rule fires when d = n * amount - S > 0 and d^2 > z^2 (nQ - S^2),
in integers (the amounts are whole units of 10^-scale). With sigma = 0 any amount above the
mean fires, and exactly z sigma above does not.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import Field

from fraudcore.core.rules.base import ChangelogState
from fraudcore.core.rules.history import Histories, History, HistoryRule


class _Spikes(Histories):
    """The account histories, judged by mean and standard deviation."""

    __slots__ = ("_z2",)

    def __init__(self, rule: AmountSpike) -> None:
        super().__init__(rule.history, rule.min_history, rule.idle_days)
        self._z2 = Fraction(rule.z) ** 2

    def judge(self, held: History, units: int) -> bool:
        n = len(held.amounts)
        d = n * units - held.total
        if d <= 0:
            return False
        spread = n * held.squares - held.total * held.total
        z2 = self._z2
        return d * d * z2.denominator > z2.numerator * spread


class AmountSpike(HistoryRule):
    type: Literal["amount_spike"] = "amount_spike"
    z: Decimal = Field(gt=0, allow_inf_nan=False)

    def new_state(self) -> ChangelogState:
        return _Spikes(self)
