"""Audit the detector's work: is every input record in exactly one output topic, the right one,
with the right fraud.rules header?

Run it as `python -m detector.audit [--json]` with the detector's environment. It reads the input
topic and the legit, fraud and dead-letter topics with isolation_level=read_committed, from the
beginning up to the end offsets it finds when it starts (so it always finishes), and matches each
input record to its outputs (detector/audit_match.py). Where each input belongs is recomputed
from the input alone by the rules' reference implementation (detector/reference.py), the
rules of RULES_FILE, or of FRAUD_AMOUNT_THRESHOLD and VELOCITY_*, as the detector's.

Exit status: 0 all is well, 1 something is lost, duplicated, misrouted, wrongly labelled
(fraud.rules) or unexpected, 2 a bad setting, 3 the audit could not be completed (no broker, no
input topic, or a topic could not be read to its end).
Audit a drained pipeline: input the detector has not processed yet counts as lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from detector.audit_match import AuditResult, AuditTopics, Record, audit_records
from detector.config import DetectorSettings
from detector.report_cli import add_read_timeout, broker_answers, quiet_logging
from fraudcore import kafka
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.rules.ruleset import RuleSet
from fraudcore.errors import BrokerUnavailableError, ClientError
from fraudcore.kafka.reading import IncompleteReadError, TopicReader
from fraudcore.kafka.types import ConsumedRecord

__all__ = ["AuditResult", "AuditTopics", "Record", "audit_records", "main", "render"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_BAD_SETTING = 2
EXIT_INCOMPLETE = 3
DEFAULT_READ_TIMEOUT_SECONDS = 120.0


def _record(r: ConsumedRecord) -> Record:
    return Record(r.topic, r.key, r.value, r.headers or [], r.partition, r.offset, r.timestamp)


def render(
    result: AuditResult,
    missing: Sequence[str],
    rules: RuleSet,
) -> str:
    topics = result.topics
    lines = [f"audit: read_committed, fraud if any fires of: {rules.describe()}"]
    lines.append(f"  {'input':<12} {topics.input:<40} {result.inputs:>9}")
    for role, topic in topics.outputs.items():
        lines.append(
            f"  {role:<12} {topic:<40} {result.outputs[role]:>9}"
            f"  (expected {result.expected[role]})"
        )
    if result.expected_rules:
        by_rule = ", ".join(f"{rules} {n}" for rules, n in sorted(result.expected_rules.items()))
        lines.append(f"  {'':<12} expected fraud by fraud.rules: {by_rule}")
    if missing:
        lines.append(f"  missing topics (read as empty): {', '.join(missing)}")
    lines.append(
        f"  lost {result.lost}, duplicated {result.duplicated}, misrouted {result.misrouted}, "
        f"wrong fraud.rules {result.wrong_rules}, unexpected {result.unexpected}"
    )
    for kind, found in result.examples.items():
        for example in found:
            lines.append(f"  {kind}: {json.dumps(example)}")
    if result.ok:
        lines.append(
            "audit: OK, every input record is in exactly one output topic, the right one, "
            "with the right fraud.rules"
        )
    else:
        lines.append("audit: PROBLEMS FOUND")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m detector.audit",
        description=(
            "Check that every record of TRANSACTIONS_TOPIC is in exactly one of LEGIT_TOPIC, "
            "FRAUD_TOPIC and DEAD_LETTER_TOPIC, the one the rule picks (read_committed). "
            "Settings come from the same environment variables as the detector's. "
            "Exit 0 all well, 1 problems found, 2 bad setting, 3 audit incomplete."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_read_timeout(parser, DEFAULT_READ_TIMEOUT_SECONDS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(DetectorSettings)
    except SettingsError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    quiet_logging(settings)
    topics = AuditTopics.from_settings(settings)
    outputs = list(dict.fromkeys(topics.outputs.values()))
    try:
        if not broker_answers(settings, "detector-audit"):
            return EXIT_INCOMPLETE
        names = [*outputs, topics.input]
        reading = kafka.driver(settings).reader(settings, "detector-audit")
        with TopicReader(reading, names, args.timeout) as reader:
            if topics.input in reader.missing:  # a typo in a name should not pass as all well
                raise IncompleteReadError(f"the input topic {topics.input} does not exist")
            result = audit_records(
                [_record(r) for r in reader.records([topics.input])],
                map(_record, reader.records(outputs)),  # streamed: only inputs are kept
                topics,
                rules=settings.rule_set,
                max_value_bytes=settings.max_transaction_bytes,
            )
            missing = reader.missing
    except (BrokerUnavailableError, IncompleteReadError, ClientError) as exc:
        print(f"audit: incomplete: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if args.json:
        print(json.dumps({**result.to_dict(), "missing_topics": missing}))
    else:
        print(render(result, missing, settings.rule_set))
    return EXIT_OK if result.ok else EXIT_PROBLEMS


if __name__ == "__main__":
    raise SystemExit(main())
