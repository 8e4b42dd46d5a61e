"""A rule set: the rules in order (from a rules file, or from FRAUD_AMOUNT_THRESHOLD and
VELOCITY_*), and their state per input partition.

A verdict is the set of rules that fired on a valid transaction: none is legit, any is fraud,
and the fraud record's fraud.rules header lists the fired rules' names in the rule set's order.
Invalid records (dead-lettered) are seen by no rule. Each partition's records must be given in
offset order: the stateful rules count them in that order.

Each commit records, in the offset metadata of every input partition, what its state needs to be
found again (RulesCheckpoint): where the replay of the REPLAY rules starts, the partition's
stream time, and the input offset of the last batch that wrote to the changelog.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from fraudcore.core import velocity
from fraudcore.core.codec import (
    DEFAULT_MAX_VALUE_BYTES,
    InvalidTransactionError,
    decode_amount,
    decode_source_amount,
)
from fraudcore.core.rule import (
    DEFAULT_THRESHOLD,
    LEGIT,
    RULE_AMOUNT,
    RULE_VELOCITY,
    Classification,
    Verdict,
)
from fraudcore.core.rules.amount_above import AmountAbove
from fraudcore.core.rules.base import (
    ChangelogState,
    ReplayState,
    Rule,
    RuleState,
    StateKind,
)
from fraudcore.core.rules.count_in_window import CountInWindow

CHECKPOINT_VERSION = "rules/1"


@dataclass(frozen=True, slots=True)
class RulesCheckpoint:
    """What a commit records of a partition's rule state. `replay_window_ms`: the longest
    window of the REPLAY rules when committed (a restore under another one says so)."""

    replay_from: int
    stream_time: int | None = None
    changelog_at: int | None = None  # the input offset committed with the last changelog write
    replay_window_ms: float = 0.0

    def encode(self) -> str:
        def text(number: int | None) -> str:
            return "-" if number is None else str(number)

        return (
            f"{CHECKPOINT_VERSION} {self.replay_from} {text(self.stream_time)} "
            f"{text(self.changelog_at)} {self.replay_window_ms!r}"
        )

    @classmethod
    def decode(cls, text: str | None) -> RulesCheckpoint | None:
        """The checkpoint in a commit's metadata, or an older velocity one; None when there is
        none (or not ours)."""
        parts = (text or "").split(" ")

        def number(part: str) -> int | None:
            return None if part == "-" else int(part)

        try:
            if len(parts) == 5 and parts[0] == CHECKPOINT_VERSION:
                return cls(int(parts[1]), number(parts[2]), number(parts[3]), float(parts[4]))
        except ValueError:
            return None
        old = velocity.WindowCheckpoint.decode(text)
        return None if old is None else cls(old.replay_from, replay_window_ms=old.window_ms)


class RuleSet:
    """The rules in order, and each verdict a set of them makes (made once, then shared)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise ValueError("a rule set needs at least one rule")
        self.rules = tuple(rules)
        self.names = tuple(rule.name for rule in self.rules)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"rule names must be unique: {', '.join(self.names)}")
        self.needs_account = any(rule.needs_account for rule in self.rules)
        kinds = [rule.state_kind for rule in self.rules]
        self.replayed = tuple(i for i, kind in enumerate(kinds) if kind is StateKind.REPLAY)
        self.changelogged = tuple(i for i, kind in enumerate(kinds) if kind is StateKind.CHANGELOG)
        self.stateful = bool(self.replayed or self.changelogged)
        self.replay_window_ms = max((rule.replay_window_ms() for rule in self.rules), default=0.0)
        self._verdicts: dict[int, Classification] = {0: LEGIT}

    @classmethod
    def from_settings(
        cls,
        threshold: Decimal = DEFAULT_THRESHOLD,
        max_transactions: int | None = None,
        window_seconds: float | None = None,
    ) -> RuleSet:
        """The rules without a rules file: FRAUD_AMOUNT_THRESHOLD as `amount`, and VELOCITY_* as
        `velocity` when set, in that order (as the detector has always named them)."""
        rules: list[Rule] = [AmountAbove(name=RULE_AMOUNT, threshold=threshold)]
        if max_transactions is not None and window_seconds is not None:
            rules.append(
                CountInWindow(
                    name=RULE_VELOCITY,
                    max_transactions=max_transactions,
                    window_seconds=window_seconds,
                )
            )
        return cls(rules)

    def verdict(self, fired: int) -> Classification:
        """The verdict when the rules whose bits are set in `fired` fired (bit i: rule i)."""
        verdict = self._verdicts.get(fired)
        if verdict is None:
            names = [name for i, name in enumerate(self.names) if fired >> i & 1]
            verdict = Classification(Verdict.FRAUD, rules=",".join(names).encode())
            self._verdicts[fired] = verdict
        return verdict

    def partition(self) -> PartitionRules:
        """Fresh state for one input partition."""
        return PartitionRules(self)

    def describe(self) -> str:
        return "; ".join(rule.describe() for rule in self.rules)


class PartitionRules:
    """The rules' state for one input partition: give it the partition's records in order."""

    __slots__ = ("changelog_at", "rule_set", "states", "stream_time")

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.states: list[RuleState] = [rule.new_state() for rule in rule_set.rules]
        self.stream_time: int | None = None
        self.changelog_at: int | None = None

    def classify(
        self,
        value: bytes | None,
        timestamp: int = 0,
        offset: int = 0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> Classification:
        """Decide where one record value goes, counting it in the state. Never raises on bad
        input."""
        try:
            if self.rule_set.needs_account:
                account, amount = decode_source_amount(value, max_value_bytes)
            else:
                account, amount = "", decode_amount(value, max_value_bytes)
        except InvalidTransactionError as exc:
            return Classification(Verdict.INVALID, str(exc))  # seen by no rule
        stream_time = self.stream_time
        if stream_time is None or timestamp > stream_time:
            stream_time = self.stream_time = timestamp
        fired, bit = 0, 1
        for state in self.states:
            if state.fires(account, amount, timestamp, offset, stream_time):
                fired |= bit
            bit <<= 1
        return self.rule_set.verdict(fired) if fired else LEGIT

    def replay(
        self,
        records: Iterable[tuple[bytes | None, int, int]],
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> int:
        """Rebuild the REPLAY rules' state from (value, timestamp, offset) records, from a
        checkpoint's replay_from up to the committed offset: each counted as classify() counts
        it (invalid ones not at all). The other rules are not touched. How many were read."""
        states = [self.states[i] for i in self.rule_set.replayed]
        needs_account = self.rule_set.needs_account
        stream_time: int | None = None
        read = 0
        for value, timestamp, offset in records:
            read += 1
            try:
                if needs_account:
                    account, amount = decode_source_amount(value, max_value_bytes)
                else:
                    account, amount = "", decode_amount(value, max_value_bytes)
            except InvalidTransactionError:
                continue
            if stream_time is None or timestamp > stream_time:
                stream_time = timestamp
            for state in states:
                state.fires(account, amount, timestamp, offset, stream_time)
        if stream_time is not None and (self.stream_time is None or stream_time > self.stream_time):
            self.stream_time = stream_time
        return read

    def replay_states(self) -> list[ReplayState]:
        return [self.states[i] for i in self.rule_set.replayed]  # type: ignore[misc]

    def changelog_states(self) -> list[tuple[Rule, ChangelogState]]:
        rules = self.rule_set.rules
        return [(rules[i], self.states[i]) for i in self.rule_set.changelogged]  # type: ignore[misc]

    def checkpoint(self, next_offset: int) -> RulesCheckpoint:
        """The checkpoint for a commit at `next_offset`, everything before it counted."""
        held = [state.first_offset_held() for state in self.replay_states()]
        replay_from = min((offset for offset in held if offset is not None), default=next_offset)
        return RulesCheckpoint(
            replay_from, self.stream_time, self.changelog_at, self.rule_set.replay_window_ms
        )


def classify(
    value: bytes | None,
    threshold: Decimal = DEFAULT_THRESHOLD,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> Classification:
    """The verdict of the amount rule alone (no state): where one value goes by default."""
    return _amount_only(threshold).partition().classify(value, max_value_bytes=max_value_bytes)


@lru_cache(maxsize=8)
def _amount_only(threshold: Decimal) -> RuleSet:
    return RuleSet.from_settings(threshold)
