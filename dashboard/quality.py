"""Precision and recall by rule, live, from the generator's ground truth.

Injected fraud carries the scenario's name in a `sim.label` header, which the detector copies to
its outputs like every header; the rest carry none. A rule's alerts are the fraud records whose
`fraud.rules` (comma-separated) names it; its precision is the share of those labelled, its
recall the share of all labelled records read (legit, fraud, dead letters) that it caught.

The counts are since the dashboard started, like its "read" totals, not over the rate window: a
few seconds hold too few labelled records for a share to mean much. Rule and scenario names
come from records: they are shown printable and cut, and their number is capped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from fraudcore.core.rule import HEADER_RULES

log = logging.getLogger(__name__)

HEADER_LABEL = "sim.label"  # the generator's ground truth: the scenario of injected fraud
ALL_RULES = "(all rules)"  # the whole rule set's row: every fraud record is its alert
EMPTY_RULES = "(empty)"
OTHER_RULES = "(other)"  # beyond MAX_RULE_VALUES names the view has never heard of
MAX_RULE_VALUES = 8
RULES_WIDTH = 24  # a name from a record is shown cut to this many characters


@dataclass(frozen=True)
class RuleQuality:
    """How well one rule (or the whole set) matches the labels, since the dashboard started."""

    rule: str
    alerts: int  # fraud records it fired on
    true_positives: int  # of those, the ones with a sim.label
    precision: float | None  # true_positives / alerts; None before any alert
    recall: float | None  # labelled records it caught / labelled records seen
    recall_by_scenario: dict[str, float | None]  # the same, per sim.label value


@dataclass(frozen=True)
class ScenarioCount:
    """Where the labelled records of one scenario went."""

    scenario: str
    labelled: int  # seen on legit, fraud and dead letters
    caught: int  # on fraud
    missed: int  # on legit


@dataclass(frozen=True)
class Quality:
    """Precision and recall by rule; only in a view once a labelled record has been read."""

    rules: tuple[RuleQuality, ...]  # by name
    total: RuleQuality  # the whole rule set: any fraud record is its alert
    scenarios: tuple[ScenarioCount, ...]  # by name


@dataclass
class QualityCounts:
    """What precision and recall are computed from. Not thread-safe: one thread owns it."""

    alerts: Counter[str] = field(default_factory=Counter)  # rule -> fraud records
    true_positives: Counter[str] = field(default_factory=Counter)  # rule -> labelled of those
    labelled: Counter[str] = field(default_factory=Counter)  # scenario -> seen anywhere
    caught: Counter[str] = field(default_factory=Counter)  # scenario -> seen on fraud
    missed: Counter[str] = field(default_factory=Counter)  # scenario -> seen on legit
    caught_by: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, scenario)

    def count(
        self, headers: Sequence[tuple[str, bytes]] | None, *, fraud: bool, missed: bool
    ) -> None:
        """One record read from an output topic: `fraud` on the fraud topic, `missed` on legit
        (a labelled record there is fraud the rules let through)."""
        label = header_value(headers, HEADER_LABEL)
        scenario = None if label is None else capped(shown(label), self.labelled)
        if scenario is not None:
            self.labelled[scenario] += 1
            if missed:
                self.missed[scenario] += 1
        if not fraud:
            return
        self.alerts[ALL_RULES] += 1
        rules = header_value(headers, HEADER_RULES)
        names = {shown(n) for n in (rules or b"").decode("utf-8", "replace").split(",") if n}
        fired = [ALL_RULES, *sorted({capped(name, self.alerts) for name in names})]
        for rule in fired[1:]:
            self.alerts[rule] += 1
        if scenario is not None:
            self.caught[scenario] += 1
            for rule in fired:
                self.true_positives[rule] += 1
                self.caught_by[rule, scenario] += 1

    def view(self) -> Quality | None:
        """Precision and recall by rule, or None while no labelled record has been read."""
        if not self.labelled:
            return None
        names = sorted(rule for rule in self.alerts if rule != ALL_RULES)
        rules = tuple(self._rule_quality(rule) for rule in names)
        scenarios = tuple(
            ScenarioCount(name, count, self.caught[name], self.missed[name])
            for name, count in sorted(self.labelled.items())
        )
        return Quality(rules, self._rule_quality(ALL_RULES), scenarios)

    def _rule_quality(self, rule: str) -> RuleQuality:
        alerts, hits = self.alerts[rule], self.true_positives[rule]
        return RuleQuality(
            rule=rule,
            alerts=alerts,
            true_positives=hits,
            precision=hits / alerts if alerts else None,
            recall=hits / self.labelled.total(),
            recall_by_scenario={
                scenario: self.caught_by[rule, scenario] / count
                for scenario, count in sorted(self.labelled.items())
            },
        )


def header_value(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The value of the first header called `name` (b"" for an empty one), None without it."""
    for key, value in headers or ():
        if key == name:
            return value or b""
    return None


def shown(value: bytes | str) -> str:
    """A header's value as shown: printable, cut to RULES_WIDTH, EMPTY_RULES when blank."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    text = "".join(c if c.isprintable() else "?" for c in text.strip())
    return shorten(text, RULES_WIDTH) or EMPTY_RULES


def capped(name: str, seen: Counter[str]) -> str:
    """`name`, or OTHER_RULES once `seen` holds MAX_RULE_VALUES other names: the names come
    from records, and a stream of new ones must not grow the view without end."""
    if name in seen or len(seen.keys() - {ALL_RULES, OTHER_RULES}) < MAX_RULE_VALUES:
        return name
    return OTHER_RULES


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
