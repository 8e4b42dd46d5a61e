"""The audit's matching of input records to output records, pure so it is tested without a
broker (detector/audit.py reads the topics and reports).

* legit and fraud records are byte-identical copies of their input with the same key, so they are
  matched by (key, value) as a multiset: two identical inputs need two outputs;
* a dead letter names its input in its `error.source.*` headers; that position is used when it
  points at an input record with the same key and value, and (key, value) otherwise.

Where each input should go, and the `fraud.rules` header each fraud record should carry, is
recomputed from the input alone by the rules' reference implementation (detector/reference.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from detector.config import DetectorSettings
from detector.reference import ReferenceRules
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES
from fraudcore.core.rule import (
    HEADER_RULES,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    Verdict,
)
from fraudcore.core.rules.ruleset import RuleSet

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
    timestamp: int = -1


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
    # Fraud the rules give, by fraud.rules value ("amount", "velocity", "amount,velocity").
    expected_rules: Counter[str] = field(default_factory=Counter)
    lost: int = 0  # input records with no output at all
    duplicated: int = 0  # output records beyond one per input record
    misrouted: int = 0  # output records in another topic than the rule sends their input to
    wrong_rules: int = 0  # legit or fraud records whose fraud.rules header is not the expected
    unexpected: int = 0  # output records that match no input record
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.misrouted or self.wrong_rules or self.unexpected
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "topics": {"input": self.topics.input, **self.topics.outputs},
            "counts": {"input": self.inputs, **{r: self.outputs[r] for r in self.topics.outputs}},
            "expected": {role: self.expected[role] for role in self.topics.outputs},
            "expected_fraud_rules": dict(sorted(self.expected_rules.items())),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "misrouted": self.misrouted,
            "wrong_rules": self.wrong_rules,
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


def _rules_header(headers: Headers) -> bytes | None:
    """A legit or fraud record's fraud.rules value: b"" when absent, None when given twice."""
    values = [value for name, value in headers if name == HEADER_RULES]
    if not values:
        return b""
    return values[0] if len(values) == 1 else None


Identity = tuple[bytes | None, bytes | None]


class _Matcher:
    """The state of one audit: inputs indexed by identity and by position, outputs counted."""

    def __init__(self, topics: AuditTopics, rules: ReferenceRules, max_examples: int) -> None:
        self.result = AuditResult(topics)
        self._topics = topics
        self._rules = rules
        self._max_examples = max_examples
        # Topic -> role; if two roles share a topic, the first one in report order names it.
        self._role_of = {topic: role for role, topic in reversed(topics.outputs.items())}
        self._inputs: list[Record] = []
        self._by_identity: dict[Identity, list[int]] = {}
        self._by_position: dict[tuple[str, int, int], int] = {}
        # Per input index: the topic it belongs in, and the fraud.rules a copy there carries.
        self._expected: list[tuple[str, bytes]] = []
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
        expected = self._rules.expected(
            record.topic, record.partition, record.timestamp, record.value
        )
        topic = self._topics.for_verdict(expected.verdict)
        self._expected.append((topic, expected.rules))
        if expected.rules:
            self.result.expected_rules[expected.rules.decode()] += 1
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
            candidates = [index]
        elif identity in self._by_identity:
            self._pooled[identity] += 1
            candidates = self._by_identity[identity]
        else:
            self.result.unexpected += 1
            self._example("unexpected", record)
            return
        self._check_verdict(record, [self._expected[i] for i in candidates])

    def _check_verdict(self, record: Record, expected: list[tuple[str, bytes]]) -> None:
        """Right topic, and, in legit or fraud, the right fraud.rules (one of the inputs' it
        is a copy of: identical inputs can differ by a stateful rule)."""
        if record.topic == self._topics.dead_letter and any(
            topic == record.topic for topic, _ in expected
        ):
            return  # a dead letter keeps the input's own headers
        actual = (record.topic, _rules_header(record.headers))
        if actual in expected:
            return
        rules = [rules for topic, rules in expected if topic == record.topic]
        if rules:
            self.result.wrong_rules += 1
            self._example(
                "wrong_rules",
                record,
                rules=None if actual[1] is None else actual[1].decode(errors="replace"),
                expected_rules=rules[0].decode(),
            )
        else:
            self.result.misrouted += 1
            self._example("misrouted", record, expected_topic=expected[0][0])

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
    rules: RuleSet | None = None,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_examples: int = MAX_EXAMPLES,
) -> AuditResult:
    """Match input records to output records; pure, so it is tested without a broker.

    Counts: lost = input records with no output; duplicated = output records beyond one per
    input record; misrouted = output records in another topic than the rule sends their input
    to; wrong_rules = legit or fraud records without the fraud.rules header the rules give their
    input (none on legit); unexpected = output records that are a copy of no input record.
    Records in topics other than the three output topics are ignored. Inputs are given in
    offset order within each partition (the stateful rules count in that order). `rules`: the
    rule set (by default the amount rule at its default threshold).
    """
    reference = ReferenceRules(rules or RuleSet.from_settings(), max_value_bytes)
    matcher = _Matcher(topics, reference, max_examples)
    for record in inputs:
        matcher.add_input(record)
    for record in outputs:
        matcher.add_output(record)
    return matcher.finish()
