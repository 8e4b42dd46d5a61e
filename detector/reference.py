"""The fraud rules' reference implementation, for the audit: written to be obviously right, not
fast, and sharing no code path with the detector's (fraudcore/core/rule.py, velocity.py), so
that each checks the other.

It decodes with the strict parser only (the detector reads most values by a faster route), and
keeps every valid transaction's timestamp: a count is a plain scan of the account's history
against the documented bounds, (max(t - W, S - 2W), t], where S is the greatest timestamp of the
partition's valid transactions so far (README "Fraud rules").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from fraudcore.core.codec import InvalidTransactionError, decode
from fraudcore.core.rule import RULE_AMOUNT, RULE_VELOCITY, Verdict
from fraudcore.core.velocity import VelocityRule


@dataclass(frozen=True)
class Expected:
    verdict: Verdict
    rules: bytes = b""  # the fraud.rules header a fraud record must carry


@dataclass
class _Partition:
    stream_time: int | None = None
    history: dict[str, list[int]] = field(default_factory=dict)  # account -> every timestamp


class ReferenceRules:
    """The verdict of each input record; give each partition's records in offset order."""

    def __init__(
        self, threshold: Decimal, max_value_bytes: int, velocity: VelocityRule | None
    ) -> None:
        self._threshold = threshold
        self._max_value_bytes = max_value_bytes
        self._velocity = velocity
        self._partitions: dict[tuple[str, int], _Partition] = {}

    def expected(self, topic: str, partition: int, timestamp: int, value: bytes | None) -> Expected:
        try:
            tx = decode(value, self._max_value_bytes)
        except InvalidTransactionError:
            return Expected(Verdict.INVALID)  # and it does not count
        fired = []
        if tx.amount > self._threshold:
            fired.append(RULE_AMOUNT)
        if self._velocity is not None and self._over_limit(
            self._partitions.setdefault((topic, partition), _Partition()),
            tx.source,
            timestamp,
            self._velocity,
        ):
            fired.append(RULE_VELOCITY)
        if not fired:
            return Expected(Verdict.LEGIT)
        return Expected(Verdict.FRAUD, ",".join(fired).encode())

    @staticmethod
    def _over_limit(state: _Partition, account: str, t: int, rule: VelocityRule) -> bool:
        if state.stream_time is None or t > state.stream_time:
            state.stream_time = t
        low = max(t - rule.window_ms, state.stream_time - 2 * rule.window_ms)
        earlier = state.history.setdefault(account, [])
        count = 1 + sum(1 for ts in earlier if low < ts <= t)
        earlier.append(t)
        return count > rule.max_transactions
