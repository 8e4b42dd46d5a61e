"""count_in_window: more than `max_transactions` valid transactions of the source account within
`window_seconds` (the velocity rule). The window and its state are fraudcore/core/velocity.py's:
counted per input partition in offset order, over (max(t - W, S - 2W), t], and rebuilt by
replaying the input from the first offset the window holds."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from fraudcore.core.rules.base import ReplayState, Rule, StateKind
from fraudcore.core.velocity import PartitionWindow, VelocityRule


class _Counting:
    """The velocity window with the rule state's signature."""

    __slots__ = ("window",)

    def __init__(self, window: PartitionWindow) -> None:
        self.window = window

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        return self.window.fires(account, timestamp, offset)

    def __len__(self) -> int:
        return len(self.window)

    @property
    def accounts(self) -> int:
        return self.window.accounts

    def first_offset_held(self) -> int | None:
        window = self.window
        return window.checkpoint(-1).replay_from if len(window) else None


class CountInWindow(Rule):
    type: Literal["count_in_window"] = "count_in_window"
    max_transactions: PositiveInt
    window_seconds: float = Field(gt=0, allow_inf_nan=False)

    state_kind: ClassVar[StateKind] = StateKind.REPLAY
    needs_account: ClassVar[bool] = True

    @property
    def velocity(self) -> VelocityRule:
        return VelocityRule(self.max_transactions, self.window_seconds)

    def new_state(self) -> ReplayState:
        return _Counting(PartitionWindow(self.velocity))

    def replay_window_ms(self) -> float:
        return self.window_seconds * 1000
