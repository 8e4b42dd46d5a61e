"""Per-account amount histories, kept as CHANGELOG state: what amount_spike and
amount_out_of_range judge a transaction against.

Per source account within the input partition, in offset order, the amounts of its last
`history` valid transactions are kept (every valid transaction joins them, fired or not), as
whole units of 10^-scale (cents for the generator's amounts), the account's scale growing when
an amount has more decimals, so that the rules compare in integers: a tie is a tie. Eight bytes
per amount in an array keep a million accounts at history 20 in a few hundred MB.

The history is unbounded in time, so it is keyed state with a changelog (base.StateKind): one
value per account, `<last timestamp> <scale> <units> <units> ...`. An account with no
transaction for more than `idle_days` of stream time is idle: its history no longer counts, and
it is dropped from the store with a tombstone once it is the least recently changed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, MutableSequence
from decimal import Decimal
from typing import ClassVar

from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from fraudcore.core.rules.base import EXACT, Rule, StateKind

DAY_MS = 86_400_000


def units_of(amount: Decimal, scale: int) -> int:
    """`amount` in whole units of 10^-scale (exact: scale is at least its decimal places)."""
    return int(amount.scaleb(scale, EXACT))


def places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


class History:
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
    def decode(cls, value: bytes) -> History:
        last, scale, *amounts = map(int, value.split())
        return cls(last, scale, amounts)


class Histories:
    """One input partition's account histories, in order of last change (oldest first). A rule
    type subclasses it with `judge`: does `units` fire against the account's history?"""

    __slots__ = ("_changed", "_histories", "_history", "_idle_ms", "_min_history")

    def __init__(self, history: int, min_history: int, idle_days: Decimal) -> None:
        self._history = history
        self._min_history = min_history
        self._idle_ms = int(idle_days * DAY_MS)  # floor: whole-ms times compare the same
        self._histories: dict[str, History] = {}
        self._changed: dict[str, None] = {}  # accounts changed since changes(), in order

    def judge(self, held: History, units: int) -> bool:
        """Whether an amount of `units` fires against `held` (at least min_history amounts)."""
        raise NotImplementedError

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        held = self._histories.pop(account, None)
        if held is None or stream_time - held.last > self._idle_ms:
            held = History(timestamp)  # new, or idle: its old history no longer counts
        scale = places(amount)
        if scale > held.scale:
            held.rescale(scale)
        units = units_of(amount, held.scale)
        fired = len(held.amounts) >= self._min_history and self.judge(held, units)
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
            self._histories[account] = History.decode(value)

    def __len__(self) -> int:
        return len(self._histories)


class HistoryRule(Rule):
    """The settings of a rule judged against the account's last `history` amounts: it judges
    once at least `min_history` are held, and forgets an account idle for `idle_days`."""

    history: PositiveInt
    min_history: PositiveInt
    idle_days: Decimal = Field(Decimal(30), gt=0, allow_inf_nan=False)

    state_kind: ClassVar[StateKind] = StateKind.CHANGELOG
    needs_account: ClassVar[bool] = True

    @field_validator("min_history")
    @classmethod
    def _min_history_fits(cls, value: int, info: ValidationInfo) -> int:
        """min_history is at most history: more could never be held."""
        history = info.data.get("history")
        if history is not None and value > history:
            raise ValueError(f"must be at most history ({history}), or the rule never fires")
        return value
