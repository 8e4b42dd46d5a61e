"""amount_spike: the amount is far above the account's own usual.

Per source account within the input partition, in offset order, the amounts of its last
`history` valid transactions before this one are kept (every valid transaction joins them,
fired or not). The rule fires when there are at least `min_history` of them and
amount > mean + z * sigma, sigma being their population standard deviation (dividing by n).

Exactly, without a square root: with n amounts of sum S and sum of squares Q, mean = S/n and
n^2 sigma^2 = nQ - S^2, so the rule fires when d = n * amount - S > 0 and d^2 > z^2 (nQ - S^2).
The amounts are kept as whole units of 10^-scale (cents for the generator's amounts), the
account's scale growing when an amount has more decimals, so this is integer arithmetic: a tie
is a tie. With sigma = 0 any amount above the mean fires, and exactly z sigma above does not.
Eight bytes per amount in an array keep a million accounts at history 20 in a few hundred MB.

The history is unbounded in time, so it is keyed state with a changelog (base.StateKind): one
value per account, `<last timestamp> <scale> <units> <units> ...`. An account with no
transaction for more than `idle_days` of stream time is idle: its history no longer counts, and
it is dropped from the store with a tombstone once it is the least recently changed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, MutableSequence
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from fraudcore.core.rules.base import EXACT, ChangelogState, Rule, StateKind

DAY_MS = 86_400_000


def _units(amount: Decimal, scale: int) -> int:
    """`amount` in whole units of 10^-scale (exact: scale is at least its decimal places)."""
    return int(amount.scaleb(scale, EXACT))


def _places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class _History:
    """One account's last amounts (in units of 10^-scale, oldest first), their sum and sum of
    squares, and its latest timestamp."""

    __slots__ = ("amounts", "last", "scale", "squares", "total")

    def __init__(self, last: int, scale: int = 0, amounts: Iterable[int] = ()) -> None:
        self.last = last
        self.scale = scale
        self.amounts: MutableSequence[int] = array("q")
        self.total = self.squares = 0
        for units in amounts:
            self.append(units)

    def append(self, units: int) -> None:
        try:
            self.amounts.append(units)
        except OverflowError:  # beyond 64 bits: a plain list of ints from now on
            self.amounts = [*self.amounts, units]
        self.total += units
        self.squares += units * units

    def drop_oldest(self) -> None:
        oldest = self.amounts.pop(0)
        self.total -= oldest
        self.squares -= oldest * oldest

    def rescale(self, scale: int) -> None:
        factor = 10 ** (scale - self.scale)
        amounts = [units * factor for units in self.amounts]
        self.__init__(self.last, scale, amounts)  # type: ignore[misc]

    def encode(self) -> bytes:
        return " ".join(map(str, (self.last, self.scale, *self.amounts))).encode()

    @classmethod
    def decode(cls, value: bytes) -> _History:
        last, scale, *amounts = map(int, value.split())
        return cls(last, scale, amounts)


class _Spikes:
    """One input partition's account histories, in order of last change (oldest first)."""

    __slots__ = ("_changed", "_histories", "_history", "_idle_ms", "_min_history", "_z2")

    def __init__(self, rule: AmountSpike) -> None:
        self._history = rule.history
        self._min_history = rule.min_history
        self._z2 = Fraction(rule.z) ** 2
        self._idle_ms = int(rule.idle_days * DAY_MS)  # floor: whole-ms times compare the same
        self._histories: dict[str, _History] = {}
        self._changed: dict[str, None] = {}  # accounts changed since changes(), in order

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        held = self._histories.pop(account, None)
        if held is None or stream_time - held.last > self._idle_ms:
            held = _History(timestamp)  # new, or idle: its old history no longer counts
        places = _places(amount)
        if places > held.scale:
            held.rescale(places)
        units = _units(amount, held.scale)
        n = len(held.amounts)
        fired = False
        if n >= self._min_history:
            d = n * units - held.total
            if d > 0:
                spread = n * held.squares - held.total * held.total
                z2 = self._z2
                fired = d * d * z2.denominator > z2.numerator * spread
        held.append(units)
        if len(held.amounts) > self._history:
            held.drop_oldest()
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
