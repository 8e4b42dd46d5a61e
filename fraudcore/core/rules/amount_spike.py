"""amount_spike: the amount is far above the account's own usual.

Per source account within the input partition, in offset order, the amounts of its last
`history` valid transactions before this one are kept (every valid transaction joins them,
fired or not). The rule fires when there are at least `min_history` of them and
amount > mean + z * sigma, sigma being their population standard deviation (dividing by n).

Exactly, without a square root: with n amounts of sum S and sum of squares Q, mean = S/n and
n^2 sigma^2 = nQ - S^2, so the rule fires when d = n * amount - S > 0 and d^2 > z^2 (nQ - S^2).
Decimal arithmetic that never rounds (base.EXACT) keeps a tie a tie: with sigma = 0 any amount
above the mean fires, and exactly z sigma above does not.

The history is unbounded in time, so it is keyed state with a changelog (base.StateKind): one
value per account, `<last timestamp> <amount> <amount> ...`. An account with no transaction for
`idle_days` of stream time is idle: its history no longer counts, and it is dropped from the
store with a tombstone once it reaches the front of the store (kept in order of last change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from functools import reduce
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from fraudcore.core.rules.base import EXACT, ChangelogState, Rule, StateKind

DAY_MS = 86_400_000


class _History:
    """One account's last amounts, their sum and sum of squares, and its latest timestamp."""

    __slots__ = ("amounts", "last", "squares", "total")

    def __init__(self, last: int, amounts: deque[Decimal] | None = None) -> None:
        self.last = last
        self.amounts: deque[Decimal] = deque() if amounts is None else amounts
        self.total = _sum(self.amounts)
        self.squares = _sum(EXACT.multiply(a, a) for a in self.amounts)

    def encode(self) -> bytes:
        return " ".join([str(self.last), *map(str, self.amounts)]).encode()

    @classmethod
    def decode(cls, value: bytes) -> _History:
        last, *amounts = value.decode().split(" ")
        return cls(int(last), deque(Decimal(a) for a in amounts))


def _sum(values: Iterable[Decimal]) -> Decimal:
    return reduce(EXACT.add, values, Decimal(0))


class _Spikes:
    """One input partition's account histories, in order of last change (oldest first)."""

    __slots__ = ("_changed", "_histories", "_history", "_idle_ms", "_min_history", "_z2")

    def __init__(self, rule: AmountSpike) -> None:
        self._history = rule.history
        self._min_history = rule.min_history
        self._z2 = EXACT.multiply(rule.z, rule.z)
        self._idle_ms = int(rule.idle_days * DAY_MS)  # floor: whole-ms times compare the same
        self._histories: dict[str, _History] = {}
        self._changed: dict[str, None] = {}  # accounts changed since changes(), in order

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        held = self._histories.pop(account, None)
        if held is None or stream_time - held.last > self._idle_ms:
            held = _History(timestamp)  # new, or idle: its old history no longer counts
        amounts = held.amounts
        n = len(amounts)
        fired = False
        if n >= self._min_history:
            d = EXACT.subtract(EXACT.multiply(n, amount), held.total)
            if d > 0:
                spread = EXACT.subtract(
                    EXACT.multiply(n, held.squares), EXACT.multiply(held.total, held.total)
                )
                fired = EXACT.multiply(d, d) > EXACT.multiply(self._z2, spread)
        amounts.append(amount)
        held.total = EXACT.add(held.total, amount)
        held.squares = EXACT.add(held.squares, EXACT.multiply(amount, amount))
        if len(amounts) > self._history:
            oldest = amounts.popleft()
            held.total = EXACT.subtract(held.total, oldest)
            held.squares = EXACT.subtract(held.squares, EXACT.multiply(oldest, oldest))
        held.last = max(held.last, timestamp)
        self._histories[account] = held  # now the most recently changed
        self._touch(account)
        self._drop_idle(stream_time)
        return fired

    def _touch(self, account: str) -> None:
        changed = self._changed
        changed.pop(account, None)
        changed[account] = None

    def _drop_idle(self, stream_time: int) -> None:
        histories = self._histories
        while histories:
            account = next(iter(histories))
            if stream_time - histories[account].last <= self._idle_ms:
                return
            del histories[account]
            self._touch(account)  # a tombstone

    def changes(self) -> list[tuple[str, bytes | None]]:
        histories = self._histories
        out = []
        for account in self._changed:
            held = histories.get(account)
            out.append((account, None if held is None else held.encode()))
        self._changed = {}
        return out

    def load(self, account: str, value: bytes | None) -> None:
        self._histories.pop(account, None)
        if value is not None:
            self._histories[account] = _History.decode(value)

    def __len__(self) -> int:
        return len(self._histories)


class AmountSpike(Rule):
    type: Literal["amount_spike"] = "amount_spike"
    history: PositiveInt
    min_history: PositiveInt
    z: Decimal = Field(gt=0, allow_inf_nan=False)
    idle_days: Decimal = Field(Decimal(30), gt=0, allow_inf_nan=False)

    state_kind: ClassVar[StateKind] = StateKind.CHANGELOG
    needs_account: ClassVar[bool] = True

    @field_validator("min_history")
    @classmethod
    def _min_history_fits(cls, value: int, info: ValidationInfo) -> int:
        history = info.data.get("history")
        if history is not None and value > history:
            raise ValueError(f"must be at most history ({history}), or the rule never fires")
        return value

    def new_state(self) -> ChangelogState:
        return _Spikes(self)
