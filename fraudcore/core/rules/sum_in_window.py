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
    """One account's held transactions, sorted by timestamp, and the running total of those
    after `cut`, the start of its last in-order window: a transaction that comes in timestamp
    order moves the window's start forward and adds itself, instead of summing the window again.
    `start` is the index of the first held one after `cut`; `running` is the exact sum of
    amounts[start:]."""

    __slots__ = ("amounts", "cut", "running", "stamps", "start")

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.amounts: list[Decimal] = []
        self.start = 0
        self.cut: int | None = None
        self.running = Decimal(0)

    def total_after(self, low: int, timestamp: int) -> Decimal:
        """The sum of the held amounts in (low, timestamp]."""
        stamps, amounts = self.stamps, self.amounts
        if timestamp >= stamps[-1] and (self.cut is None or low >= self.cut):
            # In order, and the window's start did not go back: slide it forward.
            start, running, end = self.start, self.running, len(stamps)
            while start < end and stamps[start] <= low:
                running = EXACT.subtract(running, amounts[start])
                start += 1
            self.start, self.running, self.cut = start, running, low
            return running
        # Out of order (rare): sum the window itself, leaving the running total as it is.
        counted = amounts[bisect_right(stamps, low) : bisect_right(stamps, timestamp)]
        return reduce(EXACT.add, counted, Decimal(0))

    def insert(self, timestamp: int, amount: Decimal) -> None:
        stamps = self.stamps
        if not stamps or timestamp >= stamps[-1]:
            stamps.append(timestamp)
            self.amounts.append(amount)
        else:
            at = bisect_right(stamps, timestamp)
            stamps.insert(at, timestamp)
            self.amounts.insert(at, amount)
        if self.cut is None or timestamp > self.cut:
            self.running = EXACT.add(self.running, amount)
        else:
            self.start += 1  # it lies before the window's start

    def remove(self, timestamp: int) -> None:
        """Forget one held transaction stamped `timestamp`."""
        at = bisect_left(self.stamps, timestamp)
        if at < self.start:
            self.start -= 1
        else:
            self.running = EXACT.subtract(self.running, self.amounts[at])
        del self.stamps[at], self.amounts[at]


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
            low = max(timestamp - self._window, horizon)
            total = EXACT.add(held.total_after(low, timestamp), amount)
        if timestamp > horizon:
            if held is None:
                held = self._accounts[account] = _Account()
            held.insert(timestamp, amount)
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
            held.remove(timestamp)
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
