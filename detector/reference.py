"""The fraud rules' reference implementation, for the audit: written to be obviously right, not
fast, and sharing no code path with the detector's (fraudcore/core/rules/), so that each checks
the other. Every rule type has its own plain function here, from the same settings.

It decodes with the strict parser only (the detector reads most values by a faster route), keeps
every valid transaction of each account (timestamp and amount, in offset order), and computes
each rule from that whole history with fractions (docs/rules.md gives the definitions):

- a window is (max(t - W, S - 2W), t], where S is the greatest timestamp of the partition's
  valid transactions so far, this one included;
- amount_spike and amount_out_of_range look at the account's last `history` amounts before this
  one, since it was last idle (no transaction for more than idle_days of stream time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fraudcore.core.codec import InvalidTransactionError, decode
from fraudcore.core.rule import Verdict
from fraudcore.core.rules import (
    AmountAbove,
    AmountOutOfRange,
    AmountSpike,
    CountInWindow,
    SumInWindow,
)
from fraudcore.core.rules.base import Rule
from fraudcore.core.rules.ruleset import RuleSet

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Expected:
    verdict: Verdict
    rules: bytes = b""  # the fraud.rules header a fraud record must carry


@dataclass
class _Partition:
    stream_time: int | None = None
    # account -> (timestamp, amount, stream time when it came) of every valid transaction
    history: dict[str, list[tuple[int, Decimal, int]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Tx:
    amount: Decimal
    timestamp: int
    stream_time: int  # this one included
    earlier: list[tuple[int, Decimal, int]]  # the account's valid transactions before it


def _in_window(tx: _Tx, window_seconds: float) -> list[Decimal]:
    """The amounts of the account's transactions in (max(t - W, S - 2W), t], this one too."""
    window_ms = Fraction(window_seconds) * 1000
    low = max(tx.timestamp - window_ms, tx.stream_time - 2 * window_ms)
    return [a for t, a, _ in tx.earlier if low < t <= tx.timestamp] + [tx.amount]


def amount_above(rule: AmountAbove, tx: _Tx) -> bool:
    return tx.amount > rule.threshold


def count_in_window(rule: CountInWindow, tx: _Tx) -> bool:
    return len(_in_window(tx, rule.window_seconds)) > rule.max_transactions


def sum_in_window(rule: SumInWindow, tx: _Tx) -> bool:
    return sum(map(Fraction, _in_window(tx, rule.window_seconds)), Fraction(0)) > rule.max_amount


def amount_spike(rule: AmountSpike, tx: _Tx) -> bool:
    amounts = [Fraction(a) for a in _since_idle(tx, rule.idle_days * DAY_MS)[-rule.history :]]
    if len(amounts) < rule.min_history:
        return False
    n = len(amounts)
    mean = sum(amounts, Fraction(0)) / n
    variance = sum(((a - mean) ** 2 for a in amounts), Fraction(0)) / n
    excess = Fraction(tx.amount) - mean
    # amount > mean + z * sigma, both sides squared (both are >= 0 where it can fire)
    return excess > 0 and excess**2 > Fraction(rule.z) ** 2 * variance


def amount_out_of_range(rule: AmountOutOfRange, tx: _Tx) -> bool:
    amounts = _since_idle(tx, rule.idle_days * DAY_MS)[-rule.history :]
    if len(amounts) < rule.min_history:
        return False
    factor = Fraction(rule.factor)
    amount = Fraction(tx.amount)
    return amount > factor * Fraction(max(amounts)) or amount < Fraction(min(amounts)) / factor


def _since_idle(tx: _Tx, idle_ms: Decimal) -> list[Decimal]:
    """The account's amounts before this one since it was last idle: a transaction that comes
    when the stream time is more than idle_ms past the account's latest timestamp starts its
    history afresh."""
    kept: list[Decimal] = []
    latest: int | None = None
    for timestamp, amount, stream_time in [*tx.earlier, (tx.timestamp, tx.amount, tx.stream_time)]:
        if latest is not None and stream_time - latest > idle_ms:
            kept, latest = [], None
        kept.append(amount)
        latest = timestamp if latest is None else max(latest, timestamp)
    return kept[:-1]  # not this one


CHECKS: dict[type[Rule], Callable[[Any, _Tx], bool]] = {
    AmountAbove: amount_above,
    CountInWindow: count_in_window,
    SumInWindow: sum_in_window,
    AmountSpike: amount_spike,
    AmountOutOfRange: amount_out_of_range,
}


class ReferenceRules:
    """The verdict of each input record; give each partition's records in offset order."""

    def __init__(self, rule_set: RuleSet, max_value_bytes: int) -> None:
        self._rules = [(rule.name, CHECKS[type(rule)], rule) for rule in rule_set.rules]
        self._max_value_bytes = max_value_bytes
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def expected(self, topic: str, partition: int, timestamp: int, value: bytes | None) -> Expected:
        try:
            decoded = decode(value, self._max_value_bytes)
        except InvalidTransactionError:
            return Expected(Verdict.INVALID)  # and it is seen by no rule
        state = self._partitions.setdefault((topic, partition), _Partition())
        if state.stream_time is None or timestamp > state.stream_time:
            state.stream_time = timestamp
        earlier = state.history.setdefault(decoded.source, [])
        tx = _Tx(decoded.amount, timestamp, state.stream_time, earlier)
        fired = [name for name, check, rule in self._rules if check(rule, tx)]
        earlier.append((timestamp, decoded.amount, state.stream_time))
        if not fired:
            return Expected(Verdict.LEGIT)
        return Expected(Verdict.FRAUD, ",".join(fired).encode())
