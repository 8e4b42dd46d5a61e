"""amount_above: the transaction's amount is above a threshold, compared exactly (900 and 900.00
do not fire at threshold 900; 900.01 does). Stateless."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from fraudcore.core.rules.base import Rule, RuleState


class _Above:
    __slots__ = ("threshold",)

    def __init__(self, threshold: Decimal) -> None:
        self.threshold = threshold

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        return amount > self.threshold


class AmountAbove(Rule):
    type: Literal["amount_above"] = "amount_above"
    threshold: Decimal = Field(ge=0, allow_inf_nan=False)

    def new_state(self) -> RuleState:
        return _Above(self.threshold)
