"""The audit command on a real broker, against outputs written by hand with known faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fraudcore.core.rule import (
    HEADER_RULES,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from tests.kafka_helpers import Topics, create_topic, produce, run_command
from tests.samples import tutorial_record

pytestmark = pytest.mark.integration

LEGIT = tutorial_record(10.0)
FRAUD = tutorial_record(950.0)


def run_audit(topics: Topics, bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_command(
        [sys.executable, "-m", "detector.audit", *args],
        {**os.environ, **topics.env(bootstrap)},
        timeout=120,
    )


def test_audit_finds_each_kind_of_fault(bootstrap: str, topics: Topics) -> None:
    for name in (topics.input, topics.legit, topics.fraud, topics.invalid):
        create_topic(bootstrap, name, partitions=1)
    inputs = [(b"ok", LEGIT), (b"lost", LEGIT), (b"twice", FRAUD), (b"wrong", FRAUD)]
    inputs += [(b"bad", b"not json"), (b"bad", b"not json")]  # offsets 4 and 5, same bytes
    produce(bootstrap, topics.input, inputs)
    produce(bootstrap, topics.legit, [(b"ok", LEGIT), (b"wrong", FRAUD), (b"nobody", LEGIT)])
    produce(
        bootstrap, topics.fraud, [(b"twice", FRAUD), (b"twice", FRAUD)], [(HEADER_RULES, b"amount")]
    )
    source = [(HEADER_SOURCE_TOPIC, topics.input.encode()), (HEADER_SOURCE_PARTITION, b"0")]
    # Both dead letters name offset 4: by the headers, 4 is doubled and 5 is lost.
    produce(
        bootstrap,
        topics.invalid,
        [(b"bad", b"not json")] * 2,
        [*source, (HEADER_SOURCE_OFFSET, b"4")],
    )

    done = run_audit(topics, bootstrap, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["counts"] == {"input": 6, "legit": 3, "fraud": 2, "dead_letter": 2}
    assert report["expected"] == {"legit": 2, "fraud": 2, "dead_letter": 2}
    assert (report["lost"], report["duplicated"]) == (2, 2)
    assert (report["misrouted"], report["unexpected"], report["wrong_rules"]) == (1, 1, 0)
    assert {e["key"] for e in report["examples"]["lost"]} == {"lost", "bad"}
    assert report["examples"]["misrouted"][0]["expected_topic"] == topics.fraud
    assert report["examples"]["unexpected"][0]["key"] == "nobody"

    human = run_audit(topics, bootstrap)
    assert human.returncode == 1
    assert "lost 2, duplicated 2, misrouted 1, wrong fraud.rules 0, unexpected 1" in human.stdout
    assert "PROBLEMS FOUND" in human.stdout


def test_audit_of_a_missing_input_topic_is_incomplete(bootstrap: str, topics: Topics) -> None:
    done = run_audit(topics, bootstrap, "--json")
    assert done.returncode == 3
    assert done.stderr.strip().endswith(f"the input topic {topics.input} does not exist")
    assert done.stdout == ""
