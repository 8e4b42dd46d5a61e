"""The audit's matching of inputs to outputs, without a broker; and its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from detector.audit import AuditTopics, Record, audit_records, render
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from fraudcore.core.rule import (
    HEADER_REASON,
    HEADER_RULES,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from fraudcore.core.rules.ruleset import RuleSet
from tests.kafka_helpers import run_command
from tests.samples import tutorial_record

TOPICS = AuditTopics(input="in", legit="legit", fraud="fraud", dead_letter="dlq")
LEGIT = tutorial_record(899.99)
FRAUD = tutorial_record(900.01)
INVALID = b"not json"


def inp(value: bytes | None, key: bytes | None = b"k", offset: int = -1) -> Record:
    return Record("in", key, value, (), 0, offset)


def out(
    topic: str,
    value: bytes | None,
    key: bytes | None = b"k",
    rules: bytes | None = None,
    **headers: bytes,
) -> Record:
    """An output record; one in "fraud" carries fraud.rules (by default "amount", as the
    detector writes it) unless `rules` is b"" ."""
    found = list(headers.items())
    if rules is None and topic == "fraud":
        rules = b"amount"
    if rules:
        found.append((HEADER_RULES, rules))
    return Record(topic, key, value, found)


def dead_letter(value: bytes | None, offset: int, key: bytes | None = b"k") -> Record:
    headers = [
        (HEADER_REASON, b"not_json: ..."),
        (HEADER_SOURCE_TOPIC, b"in"),
        (HEADER_SOURCE_PARTITION, b"0"),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]
    return Record("dlq", key, value, headers)


def counts(result: object) -> tuple[int, int, int, int]:
    data = result.to_dict()  # type: ignore[attr-defined]
    return data["lost"], data["duplicated"], data["misrouted"], data["unexpected"]


def test_every_input_once_in_the_right_topic_is_ok() -> None:
    inputs = [inp(LEGIT, b"a"), inp(FRAUD, b"b"), inp(INVALID, b"c"), inp(None, b"d")]
    outputs = [
        out("fraud", FRAUD, b"b"),
        out("legit", LEGIT, b"a"),
        out("dlq", None, b"d"),
        out("dlq", INVALID, b"c"),
    ]
    result = audit_records(inputs, outputs, TOPICS)
    assert result.ok
    assert counts(result) == (0, 0, 0, 0)
    data = result.to_dict()
    assert data["counts"] == {"input": 4, "legit": 1, "fraud": 1, "dead_letter": 2}
    assert data["expected"] == {"legit": 1, "fraud": 1, "dead_letter": 2}
    assert data["topics"] == {
        "input": "in",
        "legit": "legit",
        "fraud": "fraud",
        "dead_letter": "dlq",
    }
    assert "audit: OK" in render(result, [], RuleSet.from_settings(Decimal(900)))


def test_an_input_without_output_is_lost() -> None:
    result = audit_records(
        [inp(LEGIT, b"a"), inp(FRAUD, b"b")], [out("legit", LEGIT, b"a")], TOPICS
    )
    assert counts(result) == (1, 0, 0, 0)
    assert not result.ok
    assert result.examples["lost"][0]["key"] == "b"
    assert "PROBLEMS FOUND" in render(result, [], RuleSet.from_settings(Decimal(900)))


def test_a_second_copy_is_a_duplicate() -> None:
    outputs = [out("fraud", FRAUD), out("fraud", FRAUD), out("fraud", FRAUD)]
    result = audit_records([inp(FRAUD)], outputs, TOPICS)
    assert counts(result) == (0, 2, 0, 0)
    assert result.examples["duplicated"][0]["copies"] == 3


def test_the_wrong_topic_is_misrouted_not_lost() -> None:
    outputs = [out("legit", FRAUD, b"f"), out("fraud", LEGIT, b"l"), out("legit", INVALID, b"i")]
    inputs = [inp(FRAUD, b"f"), inp(LEGIT, b"l"), inp(INVALID, b"i")]
    result = audit_records(inputs, outputs, TOPICS)
    assert counts(result) == (0, 0, 3, 0)
    wrong = {(e["topic"], e["expected_topic"]) for e in result.examples["misrouted"]}
    assert wrong == {("legit", "fraud"), ("fraud", "legit"), ("legit", "dlq")}


def test_an_output_that_copies_no_input_is_unexpected() -> None:
    # Same value under another key is another record: the key is part of the identity.
    result = audit_records([inp(LEGIT, b"a")], [out("legit", LEGIT, b"other")], TOPICS)
    assert counts(result) == (1, 0, 0, 1)
    # A changed byte is another record too.
    result = audit_records([inp(LEGIT)], [out("legit", LEGIT + b" ")], TOPICS)
    assert counts(result) == (1, 0, 0, 1)


def test_identical_inputs_are_counted_as_a_multiset() -> None:
    twice = [inp(LEGIT, offset=0), inp(LEGIT, offset=1)]
    assert counts(audit_records(twice, [out("legit", LEGIT)] * 2, TOPICS)) == (0, 0, 0, 0)
    assert counts(audit_records(twice, [out("legit", LEGIT)], TOPICS)) == (1, 0, 0, 0)
    assert counts(audit_records(twice, [out("legit", LEGIT)] * 3, TOPICS)) == (0, 1, 0, 0)


def test_dead_letters_are_matched_by_the_source_they_name() -> None:
    twice = [inp(INVALID, offset=0), inp(INVALID, offset=1)]
    right = [dead_letter(INVALID, 0), dead_letter(INVALID, 1)]
    assert counts(audit_records(twice, right, TOPICS)) == (0, 0, 0, 0)
    # By bytes alone this would look fine; the headers show input 0 twice and input 1 never.
    same_source = [dead_letter(INVALID, 0), dead_letter(INVALID, 0)]
    result = audit_records(twice, same_source, TOPICS)
    assert counts(result) == (1, 1, 0, 0)
    assert result.examples["lost"][0]["offset"] == 1


def test_a_dead_letter_naming_another_record_falls_back_to_its_bytes() -> None:
    inputs = [inp(INVALID, offset=0), inp(b"[1]", offset=1)]
    outputs = [dead_letter(INVALID, 1), dead_letter(b"[1]", 0)]  # headers swapped
    assert counts(audit_records(inputs, outputs, TOPICS)) == (0, 0, 0, 0)
    garbled = Record("dlq", b"k", INVALID, [(HEADER_SOURCE_OFFSET, b"\xff"), ("x", None)])
    assert counts(audit_records(inputs[:1], [garbled], TOPICS)) == (0, 0, 0, 0)


def test_the_threshold_is_the_rules() -> None:
    exactly = b'{"source":"A","target":"B","amount":900.00,"currency":"EUR"}'
    assert counts(audit_records([inp(exactly)], [out("legit", exactly)], TOPICS)) == (0, 0, 0, 0)
    assert counts(audit_records([inp(exactly)], [out("fraud", exactly)], TOPICS)) == (0, 0, 1, 0)
    lower = audit_records(
        [inp(exactly)], [out("fraud", exactly)], TOPICS, rules=RuleSet.from_settings(Decimal(100))
    )
    assert lower.ok


def test_records_of_other_topics_are_ignored() -> None:
    inputs = [Record("in", b"k", LEGIT)]
    outputs = [Record("legit", b"k", LEGIT), Record("elsewhere", b"k", LEGIT)]
    result = audit_records(inputs, outputs, TOPICS)
    assert result.ok
    assert result.to_dict()["counts"]["legit"] == 1


def test_examples_are_capped_and_json_serialisable() -> None:
    inputs = [inp(f"{i}".encode() * 100, offset=i) for i in range(50)]
    result = audit_records(inputs, [], TOPICS, max_examples=3)
    assert result.lost == 50
    assert len(result.examples["lost"]) == 3
    assert result.examples["lost"][0]["value"].endswith("...")
    json.dumps(result.to_dict())


def test_forty_thousand_records_take_seconds_not_minutes() -> None:
    """Linear: the strict decode of each input value dominates."""
    factory = TransactionFactory(seed=5)
    txs = [factory.next() for _ in range(20_000)]
    inputs = [Record("in", encode_key(tx), encode(tx), (), i % 3, i) for i, tx in enumerate(txs)]
    outputs = [
        out("fraud" if tx.amount > 900 else "legit", encode(tx), encode_key(tx)) for tx in txs
    ]
    started = time.perf_counter()
    result = audit_records(inputs, reversed(outputs), TOPICS)
    elapsed = time.perf_counter() - started
    assert result.ok, result.to_dict()
    assert result.inputs == 20_000
    assert elapsed < 20, f"{elapsed:.1f}s for 20k inputs and 20k outputs"


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_command([sys.executable, "-m", "detector.audit", *args], {**os.environ, **env}, 60)


def test_cli_bad_setting_is_one_line_and_exit_2() -> None:
    done = run_cli({"FRAUD_AMOUNT_THRESHOLD": "lots"})
    assert done.returncode == 2
    assert done.stderr.startswith("audit: invalid setting FRAUD_AMOUNT_THRESHOLD=")
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_cli_without_broker_is_incomplete_exit_3() -> None:
    done = run_cli({"KAFKA_BROKER_URL": "127.0.0.1:1", "BROKER_WAIT_SECONDS": "0.5"}, "--json")
    assert done.returncode == 3, done.stderr
    assert "audit: incomplete" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_cli_help(flag: str) -> None:
    done = run_cli({}, flag)
    assert done.returncode == 0
    assert "--json" in done.stdout


def test_fraud_without_its_rules_header_or_legit_with_one_is_wrongly_labelled() -> None:
    inputs = [inp(LEGIT, b"a"), inp(FRAUD, b"b"), inp(FRAUD, b"c"), inp(FRAUD, b"d")]
    outputs = [
        out("legit", LEGIT, b"a", rules=b"amount"),  # legit carries no fraud.rules
        out("fraud", FRAUD, b"b", rules=b""),  # fraud must carry one
        out("fraud", FRAUD, b"c", rules=b"velocity"),  # not what fired
        out("fraud", FRAUD, b"d", rules=b"amount", **{HEADER_RULES: b"amount"}),  # given twice
    ]
    result = audit_records(inputs, outputs, TOPICS)
    assert not result.ok
    assert (result.wrong_rules, result.misrouted) == (4, 0)
    assert result.examples["wrong_rules"][0]["expected_rules"] == ""
    assert "wrong fraud.rules 4" in render(result, [], RuleSet.from_settings(Decimal(900)))


def test_velocity_verdicts_are_recomputed_per_partition_by_timestamp() -> None:
    """N=1 in 10 s: the second of an account within 10 s in one partition is fraud by
    velocity; the same account in another partition counts apart."""
    rule = RuleSet.from_settings(Decimal(900), 1, 10.0)
    t0 = 1_800_000_000_000
    values = [tutorial_record(10.0 + n) for n in range(4)]
    rich = tutorial_record(950.0)

    def at(value: bytes, partition: int, offset: int, ts: int) -> Record:
        return Record("in", b"k", value, (), partition, offset, ts)

    inputs = [
        at(values[0], 0, 0, t0),
        at(values[1], 0, 1, t0 + 9_999),  # velocity
        at(values[2], 1, 0, t0 + 5),  # another partition: first there
        at(rich, 0, 2, t0 + 20_000),  # amount only: 10 s after the last one of partition 0
        at(values[3], 0, 3, t0 + 20_001),  # amount's record counts: velocity
    ]
    outputs = [
        out("legit", values[0]),
        out("fraud", values[1], rules=b"velocity"),
        out("legit", values[2]),
        out("fraud", rich, rules=b"amount"),
        out("fraud", values[3], rules=b"velocity"),
    ]
    result = audit_records(inputs, outputs, TOPICS, rules=rule)
    assert result.ok, result.to_dict()
    wrong = [*outputs[:3], out("fraud", rich, rules=b"amount,velocity"), outputs[4]]
    assert audit_records(inputs, wrong, TOPICS, rules=rule).wrong_rules == 1
    assert audit_records(inputs, outputs, TOPICS).misrouted == 2  # velocity off: legit
