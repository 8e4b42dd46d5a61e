"""sum_in_window: the total amount of the source account's valid transactions whose timestamps
lie in the velocity rule's window, this one included, is above `max_amount` (compared exactly).

The window is count_in_window's: per input partition, in offset order, (max(t - W, S - 2W), t]
where S is the partition's stream time, so what is at or before S - 2W is forgotten. Its state
is therefore a function of the last 2W of input and is rebuilt by replay, as velocity's is: a
changelog would write the account's whole window again at every change (its bytes grow with
the account's activity) and its uncompacted tail would be read at restore (docs/rules.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from decimal import Decimal
from functools import reduce
from typing import ClassVar, Literal

from pydantic import Field

from fraudcore.core.rules.base import EXACT, ReplayState, Rule, StateKind


class _Account:
    """One account's held transactions, sorted by timestamp: timestamps and amounts."""

    __slots__ = ("amounts", "stamps")

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.amounts: list[Decimal] = []


class _Sums:
    """One input partition's held transactions, by account, and in arrival (offset) order."""

    __slots__ = ("_accounts", "_arrivals", "_limit", "_span", "_window", "stream_time")

    def __init__(self, rule: SumInWindow) -> None:
        self._limit = rule.max_amount
        window_ms = rule.window_seconds * 1000
        # Whole-ms timestamps: ts > t - W is ts > t - ceil(W) (as in velocity.py).
        self._window = math.ceil(window_ms)
        self._span = math.ceil(2 * window_ms)
        self.stream_time: int | None = None
        self._accounts: dict[str, _Account] = {}
        self._arrivals: deque[tuple[int, int, str]] = deque()  # timestamp, offset, account

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        # Its own stream time: a replay starts it again from the first offset held.
        if self.stream_time is None or timestamp > self.stream_time:
            self.stream_time = timestamp
        horizon = self.stream_time - self._span
        held = self._accounts.get(account)
        total = amount
        if held is not None:
            stamps = held.stamps
            low = max(timestamp - self._window, horizon)
            counted = held.amounts[bisect_right(stamps, low) : bisect_right(stamps, timestamp)]
            total = reduce(EXACT.add, counted, amount)
        if timestamp > horizon:
            if held is None:
                held = self._accounts[account] = _Account()
            at = bisect_right(held.stamps, timestamp)
            held.stamps.insert(at, timestamp)
            held.amounts.insert(at, amount)
            self._arrivals.append((timestamp, offset, account))
        self._forget(horizon)
        return total > self._limit

    def _forget(self, horizon: int) -> None:
        """Drop what lies at or before the horizon, from the front of the arrivals (an older
        timestamp behind a newer one waits for it, held but never counted)."""
        arrivals, accounts = self._arrivals, self._accounts
        while arrivals and arrivals[0][0] <= horizon:
            timestamp, _, account = arrivals.popleft()
            held = accounts[account]
            at = bisect_left(held.stamps, timestamp)
            del held.stamps[at], held.amounts[at]
            if not held.stamps:
                del accounts[account]

    def first_offset_held(self) -> int | None:
        return self._arrivals[0][1] if self._arrivals else None

    def __len__(self) -> int:
        return len(self._arrivals)

    @property
    def accounts(self) -> int:
        return len(self._accounts)


class SumInWindow(Rule):
    type: Literal["sum_in_window"] = "sum_in_window"
    max_amount: Decimal = Field(ge=0, allow_inf_nan=False)
    window_seconds: float = Field(gt=0, allow_inf_nan=False)

    state_kind: ClassVar[StateKind] = StateKind.REPLAY
    needs_account: ClassVar[bool] = True

    def new_state(self) -> ReplayState:
        return _Sums(self)

    def replay_window_ms(self) -> float:
        return self.window_seconds * 1000
