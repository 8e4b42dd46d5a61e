"""Backtest: replay recorded input through a rules file, and measure what each rule catches.

Run it as `python -m detector.backtest --rules FILE [--since WHEN] [--json]` with the detector's
environment (TRANSACTIONS_TOPIC, the connection settings, KAFKA_CLIENT). It reads the input topic
read_committed, outside any consumer group, from the beginning (or from --since) up to the end
offsets found when it starts, and classifies every record with the detector's own rule state
(fraudcore/core/rules/ruleset.py): per partition, in offset order, with each record's Kafka
timestamp, so a record's verdict is the one the live detector gives it. It writes nothing.

Records that carry the `sim.label` header (the generator's injected scenarios) are the ground
truth: a rule's precision is the share of its alerts that carry a label, its recall for a
scenario the share of that scenario's records it alerted.

Exit status: 0 done, 2 bad usage or setting (a bad rules file), 3 the input could not be read
(no broker, not read to its end), 4 the input topic does not exist, 5 nothing to replay (the
topic, or the range --since selects, is empty).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from detector.config import DetectorSettings
from detector.report_cli import add_read_timeout, broker_answers, quiet_logging
from fraudcore import kafka
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES
from fraudcore.core.rule import Classification, Verdict
from fraudcore.core.rules.ruleset import PartitionRules, RuleSet
from fraudcore.errors import BrokerUnavailableError, ClientError
from fraudcore.kafka.reading import IncompleteReadError, TopicReader
from fraudcore.kafka.types import ConsumedRecord

log = logging.getLogger(__name__)

# The generator's ground truth: the scenario an injected record belongs to.
HEADER_LABEL = "sim.label"

EXIT_OK = 0
EXIT_BAD_SETTING = 2
EXIT_INCOMPLETE = 3
EXIT_NO_TOPIC = 4
EXIT_EMPTY = 5
DEFAULT_READ_TIMEOUT_SECONDS = 300.0

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

OnVerdict = Callable[[ConsumedRecord, Classification], None]


def parse_since(text: str, now: datetime | None = None) -> int:
    """The --since time in ms since the epoch: a duration back from now (90s, 10m, 2h, 1d), or
    an ISO-8601 time (UTC when it names no zone). ValueError names what was expected."""
    match = _DURATION.match(text.strip())
    if match:
        now = now or datetime.now(UTC)
        back = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
        return int((now - back).timestamp() * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected an ISO-8601 time (2024-05-01T12:00:00Z) "
            "or a duration back from now (90s, 10m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def label_of(record: ConsumedRecord) -> str | None:
    """The record's scenario label; None on a normal record."""
    for name, value in record.headers or ():
        if name == HEADER_LABEL:
            return value.decode("utf-8", "replace")
    return None


@dataclass
class Tally:
    """What a replay counted: per rule (by its index in the rule set) and for the whole set."""

    names: tuple[str, ...]
    records: int = 0
    invalid: int = 0
    labelled: Counter[str] = field(default_factory=Counter)  # records per scenario
    alerts: Counter[int] = field(default_factory=Counter)  # per rule; -1: the whole set
    true_alerts: Counter[int] = field(default_factory=Counter)  # alerts on labelled records
    caught: Counter[tuple[int, str]] = field(default_factory=Counter)  # (rule, scenario)
    overlap: Counter[tuple[int, int]] = field(default_factory=Counter)  # (rule, later rule)

    def to_dict(self) -> dict[str, Any]:
        """The report: the documented JSON shape (docs/rules.md, "Backtest")."""
        rules = {name: self._measures(i) for i, name in enumerate(self.names)}
        pairs = [
            {"rules": [self.names[a], self.names[b]], "records": n}
            for (a, b), n in sorted(self.overlap.items())
        ]
        return {
            "records": self.records,
            "invalid": self.invalid,
            "labelled": dict(sorted(self.labelled.items())),
            "rules": rules,
            "overlap": pairs,
            "total": self._measures(-1),
        }

    def _measures(self, rule: int) -> dict[str, Any]:
        alerts = self.alerts[rule]
        precision = (
            self.true_alerts[rule] / alerts if alerts and self.labelled else None
        )  # no labels in range: nothing to be precise about
        return {
            "alerts": alerts,
            "share": alerts / self.records if self.records else 0.0,
            "precision": precision,
            "recall": {
                scenario: self.caught[rule, scenario] / n
                for scenario, n in sorted(self.labelled.items())
            },
        }


def replay(
    records: Iterable[ConsumedRecord],
    rule_set: RuleSet,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    on_verdict: OnVerdict | None = None,
) -> Tally:
    """Classify `records` as the live detector does, and count what fired. They may interleave
    partitions, but each partition's must come in offset order (a TopicReader's do): every
    partition has its own rule state, as in the detector. `on_verdict` sees each verdict."""
    tally = Tally(rule_set.names)
    states: dict[tuple[str, int], PartitionRules] = {}
    fired_of: dict[bytes, tuple[int, ...]] = {}
    index = {name.encode(): i for i, name in enumerate(rule_set.names)}
    fraud, invalid = Verdict.FRAUD, Verdict.INVALID
    for record in records:
        tp = (record.topic, record.partition)
        rules = states.get(tp)
        if rules is None:
            rules = states[tp] = rule_set.partition()
        result = rules.classify(record.value, record.timestamp, record.offset, max_value_bytes)
        tally.records += 1
        label = label_of(record) if record.headers else None
        if label is not None:
            tally.labelled[label] += 1
        if on_verdict is not None:
            on_verdict(record, result)
        if result.verdict is invalid:
            tally.invalid += 1
        elif result.verdict is fraud:
            fired = fired_of.get(result.rules)
            if fired is None:
                fired = fired_of[result.rules] = tuple(
                    index[name] for name in result.rules.split(b",")
                )
            _count(tally, (-1, *fired), label)
            for a, first in enumerate(fired):
                for second in fired[a + 1 :]:
                    tally.overlap[first, second] += 1
    return tally


def _count(tally: Tally, rules: Sequence[int], label: str | None) -> None:
    for rule in rules:
        tally.alerts[rule] += 1
        if label is not None:
            tally.true_alerts[rule] += 1
            tally.caught[rule, label] += 1


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render(report: dict[str, Any], rules_file: Path | str, topic: str) -> str:
    """The report as a table for a terminal."""
    scenarios = list(report["labelled"])
    lines = [
        f"backtest: {rules_file} on {topic}: {report['records']} records, "
        f"{report['invalid']} invalid (dead letters)"
    ]
    if scenarios:
        counts = ", ".join(f"{name} {n}" for name, n in report["labelled"].items())
        lines.append(f"labelled: {counts}")
    header = f"  {'rule':<20} {'alerts':>8} {'share':>7} {'precision':>9}"
    header += "".join(f" {name[:16]:>16}" for name in scenarios)
    lines.append(header + ("  (recall per scenario)" if scenarios else ""))
    rows = [*report["rules"].items(), ("(any rule)", report["total"])]
    for name, row in rows:
        line = f"  {name:<20} {row['alerts']:>8} {_percent(row['share']):>7} "
        line += f"{_percent(row['precision']):>9}"
        line += "".join(f" {_percent(row['recall'][s]):>16}" for s in scenarios)
        lines.append(line)
    for pair in report["overlap"]:
        first, second = pair["rules"]
        lines.append(f"  overlap: {first} and {second} both fired on {pair['records']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m detector.backtest",
        description=(
            "Replay TRANSACTIONS_TOPIC through a rules file as the detector would, writing "
            "nothing, and report each rule's alerts, precision and recall (sim.label headers). "
            "Exit 0 done, 2 bad usage or setting, 3 input not read, 4 no input topic, "
            "5 nothing to replay."
        ),
    )
    parser.add_argument("--rules", required=True, type=Path, help="the rules file (YAML)")
    parser.add_argument(
        "--since",
        help="replay from this time: ISO-8601 (UTC unless it says) or back from now (10m, 2h)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_read_timeout(parser, DEFAULT_READ_TIMEOUT_SECONDS)
    return parser.parse_args(argv)


class NoInputTopicError(RuntimeError):
    """The input topic does not exist: a typo in a name should not pass as nothing to see."""


def replay_topic(
    settings: DetectorSettings,
    since_ms: int | None,
    timeout: float,
    on_verdict: OnVerdict | None = None,
) -> Tally:
    """Replay the input topic of `settings` through its rule set, from `since_ms` (each
    partition's first record at or after it) or the beginning, to the end offsets found first.
    `on_verdict`: as replay()'s."""
    topic = settings.transactions_topic
    reading = kafka.driver(settings).reader(settings, "detector-backtest")
    with TopicReader(reading, [topic], timeout) as reader:
        if topic in reader.missing:
            raise NoInputTopicError(f"the input topic {topic} does not exist")
        starts = None
        if since_ms is not None:
            starts = reader.offsets_for_times(dict.fromkeys(reader.ends, since_ms))
        records = reader.records([topic], starts)
        return replay(records, settings.rule_set, settings.max_transaction_bytes, on_verdict)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        since_ms = None if args.since is None else parse_since(args.since)
        settings = load_settings(DetectorSettings, rules_file=args.rules)
    except (ValueError, SettingsError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    quiet_logging(settings)
    topic = settings.transactions_topic
    try:
        if not broker_answers(settings, "detector-backtest"):
            return EXIT_INCOMPLETE
        started = time.monotonic()
        tally = replay_topic(settings, since_ms, args.timeout)
    except NoInputTopicError as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return EXIT_NO_TOPIC
    except (BrokerUnavailableError, IncompleteReadError, ClientError) as exc:
        print(f"backtest: incomplete: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if not tally.records:
        where = "" if args.since is None else f" since {args.since}"
        print(
            f"backtest: nothing to replay: the input topic {topic} is empty{where}",
            file=sys.stderr,
        )
        return EXIT_EMPTY
    log.info("replayed %d records in %.3fs", tally.records, time.monotonic() - started)
    report = tally.to_dict()
    print(json.dumps(report) if args.json else render(report, args.rules, topic))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
