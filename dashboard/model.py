"""The dashboard's state, kept apart from Kafka and the terminal so that it is easy to test.

`DashboardState` takes in what the Kafka side reads (records, offsets) and `view(now)` turns
it into a `DashboardView`: plain, immutable data that `dashboard.render.render` draws.

Rates come from the records' own timestamps, counted per second: the rate of a topic is the
number of its records stamped within the last RATE_WINDOW_SECONDS complete seconds (the second
in progress is left out: its records are still arriving), divided by the window. A dashboard
that falls a little behind therefore still shows the rate at which records were written.

Fraud is also counted by the value of its `fraud.rules` header, the rules that fired
("amount", "velocity", "amount,velocity"), each value a bucket of its own. A fraud record
without that header (from a detector older than the velocity rule) counts under
NO_RULES_HEADER, not as amount-only: the dashboard cannot tell which rule a detector used.

Once records carry the generator's ground truth (`sim.label`), the view also gives precision
and recall by rule (dashboard/quality.py), counted since start like the "read" totals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import combinations

from dashboard.quality import (
    MAX_RULE_VALUES,
    OTHER_RULES,
    Quality,
    QualityCounts,
    header_value,
    shorten,
    shown,
)
from fraudcore.core.codec import InvalidTransactionError, decode
from fraudcore.core.rule import HEADER_REASON, HEADER_RULES, RULES

INPUT, LEGIT, FRAUD, DEAD_LETTER = "input", "legit", "fraud", "dead-letter"
ROLES = (INPUT, LEGIT, FRAUD, DEAD_LETTER)
RATE_WINDOW_SECONDS = 5
LATEST_FRAUD = 8

# The values of the fraud.rules header a detector writes, in the order shown: each non-empty
# combination of the rules, the rules in their declared order ("amount", "velocity",
# "amount,velocity"). Always shown, with 0 when none was read.
KNOWN_RULES = tuple(
    ",".join(combo) for n in range(1, len(RULES) + 1) for combo in combinations(RULES, n)
)
NO_RULES_HEADER = "(no rules header)"


@dataclass(frozen=True)
class FraudRow:
    timestamp: str
    source: str
    target: str
    amount: str
    currency: str
    id: str
    rules: str = NO_RULES_HEADER  # the fraud.rules header, as counted in fraud_by_rule


@dataclass(frozen=True)
class RuleCount:
    """The fraud records of one fraud.rules value."""

    rules: str
    rate: float  # records/s over the window
    total: int  # records read since the dashboard started (live only)
    share: float | None  # of all fraud read; None when no fraud was read


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    end_offset: int
    committed: int | None  # None: the group has committed nothing for this partition

    @property
    def lag(self) -> int:
        return self.end_offset - (self.committed or 0)


@dataclass(frozen=True)
class DashboardView:
    """Everything one frame shows. Built by DashboardState.view; drawn by render()."""

    broker: str
    group: str
    topics: dict[str, str]  # role -> topic name
    missing_topics: tuple[str, ...]
    rates: dict[str, float]  # role -> records/s over the window
    totals: dict[str, int]  # role -> records read since the dashboard started (live only)
    window_seconds: int
    fraud_share_window: float | None  # fraud / (legit + fraud), None when there is none
    fraud_share_total: float | None
    # KNOWN_RULES, the other values (most first), OTHER_RULES, NO_RULES_HEADER: the last three
    # only once read
    fraud_by_rule: tuple[RuleCount, ...]
    dead_letters: tuple[tuple[str, int], ...]  # (reason code, count), most frequent first
    dead_letters_total: int
    lag: tuple[PartitionLag, ...]
    lag_error: str | None
    latest_fraud: tuple[FraudRow, ...]  # newest first
    status: str  # "" when all is well, else what is wrong (e.g. the broker is unreachable)
    updated_at: str  # wall-clock time of this frame, HH:MM:SS
    quality: Quality | None = None  # None until a record with a sim.label header is read

    @property
    def lag_total(self) -> int:
        return sum(p.lag for p in self.lag)


@dataclass
class DashboardState:
    """What the dashboard has read so far. Not thread-safe: one thread owns it."""

    broker: str
    group: str
    topics: dict[str, str]
    per_second: dict[str, Counter[int]] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latest_fraud: list[tuple[int, FraudRow]] = field(default_factory=list)  # newest first
    rules_per_second: dict[str, Counter[int]] = field(default_factory=dict)
    rules_totals: Counter[str] = field(default_factory=Counter)
    lag: tuple[PartitionLag, ...] = ()
    lag_error: str | None = None
    missing_topics: tuple[str, ...] = ()
    status: str = ""
    quality: QualityCounts = field(default_factory=QualityCounts)  # live records only

    def add(
        self,
        role: str,
        timestamp_ms: int,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        live: bool = True,
    ) -> None:
        """One record read from the topic of `role`.

        `live` is False for records read only to fill the view at start-up (the latest fraud);
        they do not count in the totals. Dead letters always count: their reasons are read
        from the beginning of the topic on purpose.
        """
        if live or role == DEAD_LETTER:
            self.per_second.setdefault(role, Counter())[timestamp_ms // 1000] += 1
            self.totals[role] += 1
        if live and role != INPUT:  # each input record shows again on exactly one output
            self.quality.count(headers, fraud=role == FRAUD, missed=role == LEGIT)
        if role == DEAD_LETTER:
            self.dead_letters[_reason(headers)] += 1
        elif role == FRAUD:
            rules = self._rules_bucket(_rules(headers))
            if live:
                self.rules_per_second.setdefault(rules, Counter())[timestamp_ms // 1000] += 1
                self.rules_totals[rules] += 1
            # Partitions are read in no particular order: keep the newest (of equal times, the
            # one read last), by the time shown: the transaction's own, else the record's.
            when_ms, row = _fraud_row(timestamp_ms, value, rules)
            self.latest_fraud.insert(0, (when_ms, row))
            self.latest_fraud.sort(key=lambda item: item[0], reverse=True)
            del self.latest_fraud[LATEST_FRAUD:]

    def _rules_bucket(self, rules: str) -> str:
        """`rules`, or OTHER_RULES once MAX_RULE_VALUES unexpected values have been seen."""
        if rules in KNOWN_RULES or rules in self.rules_totals or rules == NO_RULES_HEADER:
            return rules
        unexpected = set(self.rules_totals) - {*KNOWN_RULES, NO_RULES_HEADER, OTHER_RULES}
        return rules if len(unexpected) < MAX_RULE_VALUES else OTHER_RULES

    def forget_before(self, now: float) -> None:
        """Drop per-second counts that no window can use any more."""
        oldest = int(now) - RATE_WINDOW_SECONDS - 2
        for counts in (*self.per_second.values(), *self.rules_per_second.values()):
            for second in [s for s in counts if s < oldest]:
                del counts[second]

    def set_lag(self, lag: tuple[PartitionLag, ...] | None, error: str | None = None) -> None:
        if lag is not None:
            self.lag = lag
        self.lag_error = error

    def rate(self, role: str, now: float) -> float:
        return _rate(self.per_second.get(role), now)

    def fraud_by_rule(self, now: float) -> tuple[RuleCount, ...]:
        fraud = sum(self.rules_totals.values())
        seen = sorted(
            (rules for rules in self.rules_totals if rules not in KNOWN_RULES),
            # the unexpected values, most frequent first, then the catch-alls
            key=lambda r: (r == NO_RULES_HEADER, r == OTHER_RULES, -self.rules_totals[r], r),
        )
        return tuple(
            RuleCount(
                rules,
                _rate(self.rules_per_second.get(rules), now),
                self.rules_totals[rules],
                self.rules_totals[rules] / fraud if fraud else None,
            )
            for rules in (*KNOWN_RULES, *seen)
        )

    def view(self, now: float, clock_text: str) -> DashboardView:
        rates = {role: self.rate(role, now) for role in ROLES}
        return DashboardView(
            broker=self.broker,
            group=self.group,
            topics=dict(self.topics),
            missing_topics=self.missing_topics,
            rates=rates,
            totals={role: self.totals[role] for role in ROLES},
            window_seconds=RATE_WINDOW_SECONDS,
            fraud_share_window=_share(rates[FRAUD], rates[LEGIT]),
            fraud_share_total=_share(self.totals[FRAUD], self.totals[LEGIT]),
            fraud_by_rule=self.fraud_by_rule(now),
            dead_letters=tuple(sorted(self.dead_letters.items(), key=lambda kv: (-kv[1], kv[0]))),
            dead_letters_total=sum(self.dead_letters.values()),
            lag=self.lag,
            lag_error=self.lag_error,
            latest_fraud=tuple(row for _, row in self.latest_fraud),
            status=self.status,
            updated_at=clock_text,
            quality=self.quality.view(),
        )


def _rate(counts: Counter[int] | None, now: float) -> float:
    if not counts:
        return 0.0
    last_complete = int(now) - 1
    seconds = range(last_complete - RATE_WINDOW_SECONDS + 1, last_complete + 1)
    return sum(counts.get(s, 0) for s in seconds) / RATE_WINDOW_SECONDS


def _share(fraud: float, legit: float) -> float | None:
    return fraud / (fraud + legit) if fraud + legit > 0 else None


def _reason(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """The code of the error.reason header ("not_json: Expecting value..." -> "not_json")."""
    for key, value in headers or ():
        if key == HEADER_REASON:
            text = value.decode("utf-8", errors="replace") if value else ""
            return text.partition(":")[0].strip() or "(empty)"
    return "(no reason header)"


def _rules(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """The fraud.rules header as shown: "amount,velocity" stays as it is, an unexpected value is
    cut to RULES_WIDTH printable characters, and no header is NO_RULES_HEADER."""
    value = header_value(headers, HEADER_RULES)
    if value is None:
        return NO_RULES_HEADER
    text = value.decode("utf-8", errors="replace").strip()
    return text if text in KNOWN_RULES else shown(text)


def _fraud_row(timestamp_ms: int, value: bytes | None, rules: str) -> tuple[int, FraudRow]:
    """(the time it is sorted by, in ms; the row shown)."""
    try:
        tx = decode(value)
    except InvalidTransactionError:
        text = (value or b"").decode("utf-8", errors="replace")
        return timestamp_ms, FraudRow("", "?", "?", "?", "", shorten(text, 36), rules)
    when_ms = _epoch_ms(tx.timestamp) if tx.timestamp else None
    if when_ms is None:
        when_ms = timestamp_ms
    when = tx.timestamp or datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat()
    return when_ms, FraudRow(
        timestamp=_time_of_day(when),
        source=tx.source,
        target=tx.target,
        amount=_amount(tx.amount),
        currency=tx.currency,
        id=tx.id or "",
        rules=rules,
    )


def _epoch_ms(iso: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _time_of_day(iso: str) -> str:
    """'2026-11-29T15:03:04.751Z' -> '15:03:04.751'; anything else is shown as it is."""
    _, sep, rest = iso.partition("T")
    if not sep:
        return iso
    return rest.removesuffix("Z").split("+")[0][:12]


def _amount(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def lag_from_offsets(
    end_offsets: dict[int, int], committed: dict[int, int | None]
) -> tuple[PartitionLag, ...]:
    """Per-partition lag of the group on the input topic, from end and committed offsets."""
    return tuple(
        PartitionLag(partition, end, committed.get(partition))
        for partition, end in sorted(end_offsets.items())
    )
