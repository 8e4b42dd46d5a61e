"""Audit the detector's work: is every input record in exactly one output topic, the right one?

Run it as `python -m detector.audit [--json]` with the detector's environment. It reads the input
topic and the legit, fraud and dead-letter topics with isolation_level=read_committed, from the
beginning up to the end offsets it finds when it starts (so it always finishes), and matches each
input record to its outputs:

* legit and fraud records are byte-identical copies of their input with the same key, so they are
  matched by (key, value) as a multiset: two identical inputs need two outputs;
* a dead letter names its input in its `error.source.*` headers; that position is used when it
  points at an input record with the same key and value, and (key, value) otherwise.

Exit status: 0 all is well, 1 something is lost, duplicated, misrouted or unexpected, 2 a bad
setting, 3 the audit could not be completed (no broker, no input topic, or a topic could not be
read to its end).
Audit a drained pipeline: input the detector has not processed yet counts as lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from detector.config import DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES
from fraudcore.core.rule import (
    DEFAULT_THRESHOLD,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    Verdict,
    classify,
)
from fraudcore.errors import BrokerUnavailableError, ClientError
from fraudcore.kafka_admin import wait_for_broker
from fraudcore.kafka_port import ConsumedRecord
from fraudcore.kafka_reader import IncompleteReadError, TopicReader
from fraudcore.runtime import StopFlag, configure_logging

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_BAD_SETTING = 2
EXIT_INCOMPLETE = 3
DEFAULT_READ_TIMEOUT_SECONDS = 120.0
MAX_EXAMPLES = 5
PREVIEW_BYTES = 80

Headers = Sequence[tuple[str, bytes | None]]


class Record(NamedTuple):
    """One record as the audit sees it. Position is -1 when unknown (e.g. in unit tests)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True)
class AuditTopics:
    input: str
    legit: str
    fraud: str
    dead_letter: str

    @classmethod
    def from_settings(cls, settings: DetectorSettings) -> AuditTopics:
        return cls(
            input=settings.transactions_topic,
            legit=settings.legit_topic,
            fraud=settings.fraud_topic,
            dead_letter=settings.dead_letter_topic,
        )

    def for_verdict(self, verdict: Verdict) -> str:
        if verdict is Verdict.LEGIT:
            return self.legit
        if verdict is Verdict.FRAUD:
            return self.fraud
        return self.dead_letter

    @property
    def outputs(self) -> dict[str, str]:
        """Role -> topic, in report order."""
        return {"legit": self.legit, "fraud": self.fraud, "dead_letter": self.dead_letter}


@dataclass
class AuditResult:
    topics: AuditTopics
    inputs: int = 0
    # Output records per role (legit, fraud, dead_letter), and how many each should have.
    outputs: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    lost: int = 0  # input records with no output at all
    duplicated: int = 0  # output records beyond one per input record
    misrouted: int = 0  # output records in another topic than the rule sends their input to
    unexpected: int = 0  # output records that match no input record
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.misrouted or self.unexpected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "topics": {"input": self.topics.input, **self.topics.outputs},
            "counts": {"input": self.inputs, **{r: self.outputs[r] for r in self.topics.outputs}},
            "expected": {role: self.expected[role] for role in self.topics.outputs},
            "lost": self.lost,
            "duplicated": self.duplicated,
            "misrouted": self.misrouted,
            "unexpected": self.unexpected,
            "examples": self.examples,
        }


def _preview(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data[:PREVIEW_BYTES].decode("utf-8", errors="backslashreplace")
    return text + ("..." if len(data) > PREVIEW_BYTES else "")


def _where(record: Record) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _preview(record.key),
        "value": _preview(record.value),
    }


def _source_position(headers: Headers) -> tuple[str, int, int] | None:
    """The input position a dead letter names in its headers, if it names a well-formed one."""
    found = {name: value for name, value in headers if name.startswith("error.source.")}
    try:
        topic = found[HEADER_SOURCE_TOPIC]
        partition = found[HEADER_SOURCE_PARTITION]
        offset = found[HEADER_SOURCE_OFFSET]
        if topic is None or partition is None or offset is None:
            return None
        return topic.decode(), int(partition), int(offset)
    except (KeyError, ValueError):  # ValueError covers UnicodeDecodeError too
        return None


Identity = tuple[bytes | None, bytes | None]


class _Matcher:
    """The state of one audit: inputs indexed by identity and by position, outputs counted."""

    def __init__(
        self, topics: AuditTopics, threshold: Decimal, max_value_bytes: int, max_examples: int
    ) -> None:
        self.result = AuditResult(topics)
        self._topics = topics
        self._threshold = threshold
        self._max_value_bytes = max_value_bytes
        self._max_examples = max_examples
        # Topic -> role; if two roles share a topic, the first one in report order names it.
        self._role_of = {topic: role for role, topic in reversed(topics.outputs.items())}
        self._inputs: list[Record] = []
        self._by_identity: dict[Identity, list[int]] = {}
        self._by_position: dict[tuple[str, int, int], int] = {}
        self._expected_topic: dict[bytes | None, str] = {}  # per distinct value: classify once
        self._direct: Counter[int] = Counter()  # input index -> outputs that name its position
        self._pooled: Counter[Identity] = Counter()  # outputs matched by (key, value) only

    def _example(self, kind: str, record: Record, **details: Any) -> None:
        found = self.result.examples.setdefault(kind, [])
        if len(found) < self._max_examples:
            found.append({**_where(record), **details})

    def add_input(self, record: Record) -> None:
        index = len(self._inputs)
        self._inputs.append(record)
        self._by_identity.setdefault((record.key, record.value), []).append(index)
        if record.offset >= 0:
            self._by_position[(record.topic, record.partition, record.offset)] = index
        topic = self._expected_topic.get(record.value)
        if topic is None:
            verdict = classify(record.value, self._threshold, self._max_value_bytes).verdict
            topic = self._expected_topic[record.value] = self._topics.for_verdict(verdict)
        self.result.expected[self._role_of[topic]] += 1
        self.result.inputs += 1

    def _named_source(self, record: Record) -> int | None:
        """The input a dead letter names in its headers, if it is a copy of that very input."""
        if record.topic != self._topics.dead_letter or not record.headers:
            return None
        position = _source_position(record.headers)
        index = None if position is None else self._by_position.get(position)
        if index is None:
            return None
        source = self._inputs[index]
        return index if (source.key, source.value) == (record.key, record.value) else None

    def add_output(self, record: Record) -> None:
        role = self._role_of.get(record.topic)
        if role is None:
            return
        self.result.outputs[role] += 1
        identity = (record.key, record.value)
        index = self._named_source(record)
        if index is not None:
            self._direct[index] += 1
        elif identity in self._by_identity:
            self._pooled[identity] += 1
        else:
            self.result.unexpected += 1
            self._example("unexpected", record)
            return
        should_be = self._expected_topic[record.value]
        if record.topic != should_be:
            self.result.misrouted += 1
            self._example("misrouted", record, expected_topic=should_be)

    def finish(self) -> AuditResult:
        """Count lost and duplicated inputs, identity by identity."""
        result = self.result
        for identity, indexes in self._by_identity.items():
            spare = self._pooled[identity]  # goes first to inputs that have no output yet
            for index in indexes:
                copies = self._direct[index]
                if copies == 0 and spare > 0:
                    spare -= 1
                    copies = 1
                if copies == 0:
                    result.lost += 1
                    self._example("lost", self._inputs[index])
                elif copies > 1:
                    result.duplicated += copies - 1
                    self._example("duplicated", self._inputs[index], copies=copies)
            if spare:
                result.duplicated += spare
                self._example("duplicated", self._inputs[indexes[0]], copies=spare + len(indexes))
        return result


def audit_records(
    inputs: Iterable[Record],
    outputs: Iterable[Record],
    topics: AuditTopics,
    *,
    threshold: Decimal = DEFAULT_THRESHOLD,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_examples: int = MAX_EXAMPLES,
) -> AuditResult:
    """Match input records to output records; pure, so it is tested without a broker.

    Counts: lost = input records with no output; duplicated = output records beyond one per
    input record; misrouted = output records in another topic than the rule sends their input
    to; unexpected = output records that are a copy of no input record. Records in topics other
    than the three output topics are ignored.
    """
    matcher = _Matcher(topics, threshold, max_value_bytes, max_examples)
    for record in inputs:
        matcher.add_input(record)
    for record in outputs:
        matcher.add_output(record)
    return matcher.finish()


def _record(r: ConsumedRecord) -> Record:
    return Record(r.topic, r.key, r.value, r.headers or [], r.partition, r.offset)


def render(result: AuditResult, missing: Sequence[str], threshold: Decimal) -> str:
    topics = result.topics
    lines = [f"audit: read_committed, fraud if amount > {threshold}"]
    lines.append(f"  {'input':<12} {topics.input:<40} {result.inputs:>9}")
    for role, topic in topics.outputs.items():
        lines.append(
            f"  {role:<12} {topic:<40} {result.outputs[role]:>9}"
            f"  (expected {result.expected[role]})"
        )
    if missing:
        lines.append(f"  missing topics (read as empty): {', '.join(missing)}")
    lines.append(
        f"  lost {result.lost}, duplicated {result.duplicated}, "
        f"misrouted {result.misrouted}, unexpected {result.unexpected}"
    )
    for kind, found in result.examples.items():
        for example in found:
            lines.append(f"  {kind}: {json.dumps(example)}")
    if result.ok:
        lines.append("audit: OK, every input record is in exactly one output topic, the right one")
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
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT_SECONDS,
        help="give up reading after this many seconds (default %(default)g)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(DetectorSettings)
    except SettingsError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING
    # The report goes to stdout; only warnings and errors go to stderr unless LOG_LEVEL=DEBUG.
    configure_logging(
        settings.log_level if settings.log_level != "INFO" else "WARNING", settings.log_format
    )
    topics = AuditTopics.from_settings(settings)
    outputs = list(dict.fromkeys(topics.outputs.values()))
    try:
        admin = wait_for_broker(settings, StopFlag.install(), "detector-audit")
        if admin is None:
            return EXIT_INCOMPLETE
        admin.close()
        names = [*outputs, topics.input]
        with TopicReader(settings, "detector-audit", names, args.timeout) as reader:
            if topics.input in reader.missing:  # a typo in a name should not pass as all well
                raise IncompleteReadError(f"the input topic {topics.input} does not exist")
            result = audit_records(
                [_record(r) for r in reader.records([topics.input])],
                map(_record, reader.records(outputs)),  # streamed: only inputs are kept
                topics,
                threshold=settings.fraud_amount_threshold,
                max_value_bytes=settings.max_transaction_bytes,
            )
            missing = reader.missing
    except (BrokerUnavailableError, IncompleteReadError, ClientError) as exc:
        print(f"audit: incomplete: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if args.json:
        print(json.dumps({**result.to_dict(), "missing_topics": missing}))
    else:
        print(render(result, missing, settings.fraud_amount_threshold))
    return EXIT_OK if result.ok else EXIT_PROBLEMS


if __name__ == "__main__":
    raise SystemExit(main())
