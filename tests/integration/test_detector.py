"""The detector on a real broker: routing, byte-identical forwarding, dead letters, shutdown."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from fraudcore.core.rule import (
    HEADER_REASON,
    HEADER_RULES,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from kafka import KafkaAdminClient
from tests.kafka_helpers import Service, Topics, consume, create_topic, produce, wait_until
from tests.samples import BAD_VALUES, tutorial_record

pytestmark = pytest.mark.integration

GUARANTEES = ["exactly_once", "at_least_once"]


def start_detector(bootstrap: str, topics: Topics, tmp_path: Path, **env: str) -> Service:
    return Service.module("detector", {**topics.env(bootstrap), **env}, tmp_path)


def committed_total(bootstrap: str, topics: Topics) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(topics.group)[topics.group]
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topics.input)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_mixed_batch_is_routed_and_forwarded_byte_for_byte(
    bootstrap: str, topics: Topics, tmp_path: Path, guarantee: str
) -> None:
    create_topic(bootstrap, topics.input, partitions=3)
    good = [
        (b"acct-1", tutorial_record(899.99)),
        (b"acct-2", tutorial_record(900)),
        (b"acct-3", b'{"source":"A","target":"B","amount":900.00,"currency":"EUR"}'),
        (b"acct-4", tutorial_record(900.01)),
        (None, b'{ "source" : "A",  "target":"B", "amount" : 950.5, "currency":"EUR" }'),
        (b"acct-5", tutorial_record(0)),
    ]
    txs = [TransactionFactory(seed=4).next() for _ in range(50)]
    good += [(encode_key(tx), encode(tx)) for tx in txs]
    bad = [(f"bad-{i}".encode(), value) for i, (_, value, _) in enumerate(BAD_VALUES)]
    produce(bootstrap, topics.input, [*good, *bad], headers=[("origin", b"test")])

    detector = start_detector(bootstrap, topics, tmp_path, PROCESSING_GUARANTEE=guarantee)
    outputs = consume(
        bootstrap,
        [topics.legit, topics.fraud, topics.invalid],
        expected=len(good) + len(bad),
        settle=2.0,
    )
    assert detector.running(), detector.output()
    assert detector.stop() == 0, detector.output()

    by_topic: dict[str, list[Any]] = {topics.legit: [], topics.fraud: [], topics.invalid: []}
    for record in outputs:
        by_topic[record.topic].append(record)
    legit_in = [(k, v) for k, v in good if json.loads(v)["amount"] <= 900]
    fraud_in = [(k, v) for k, v in good if json.loads(v)["amount"] > 900]
    # Byte for byte, with the key, and nothing more or less.
    assert Counter((r.key, r.value) for r in by_topic[topics.legit]) == Counter(legit_in)
    assert Counter((r.key, r.value) for r in by_topic[topics.fraud]) == Counter(fraud_in)
    assert Counter((r.key, r.value) for r in by_topic[topics.invalid]) == Counter(bad)

    # Dead letters say why and where they came from; the source offset finds the original.
    originals = {
        (r.partition, r.offset): r for r in consume(bootstrap, [topics.input], len(good) + len(bad))
    }
    expected_reason = {f"bad-{i}".encode(): reason for i, (_, _, reason) in enumerate(BAD_VALUES)}
    for record in by_topic[topics.invalid]:
        headers = dict(record.headers)
        assert headers["origin"] == b"test"
        assert headers[HEADER_REASON].decode().startswith(expected_reason[record.key])
        assert headers[HEADER_SOURCE_TOPIC] == topics.input.encode()
        source = (int(headers[HEADER_SOURCE_PARTITION]), int(headers[HEADER_SOURCE_OFFSET]))
        assert originals[source].value == record.value
        assert originals[source].key == record.key
    # Valid records keep their own headers and get no error headers; fraud ones, in order, one
    # more: the rules that fired (velocity is off, so the amount rule alone).
    for record in by_topic[topics.legit]:
        assert record.headers == [("origin", b"test")]
    for record in by_topic[topics.fraud]:
        assert record.headers == [("origin", b"test"), (HEADER_RULES, b"amount")]


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_sigterm_loses_nothing_and_restart_resumes(
    bootstrap: str, topics: Topics, tmp_path: Path, guarantee: str
) -> None:
    total = 20_000
    create_topic(bootstrap, topics.input, partitions=3)
    factory = TransactionFactory(seed=8)
    txs = [factory.next() for _ in range(total)]
    produce(bootstrap, topics.input, ((encode_key(tx), encode(tx)) for tx in txs))
    outputs = [topics.legit, topics.fraud, topics.invalid]

    env = {"PROCESSING_GUARANTEE": guarantee, "COMMIT_INTERVAL_MS": "50"}
    first = start_detector(bootstrap, topics, tmp_path, **env)
    wait_until(lambda: len(consume(bootstrap, outputs, 1, timeout=1)) > 0, 60, "first outputs")
    assert first.stop(timeout=10) == 0, first.output()
    assert "Traceback" not in first.output()

    done_before_restart = consume(bootstrap, outputs, total, timeout=3)
    committed = committed_total(bootstrap, topics)
    # Every processed record is committed and every committed offset has its output.
    assert len(done_before_restart) == committed
    assert 0 < committed < total, "stop mid-stream: make the batch larger if this fails"

    second = start_detector(bootstrap, topics, tmp_path, **env)
    records = consume(bootstrap, outputs, total, timeout=90, settle=2.0)
    assert second.stop() == 0, second.output()
    ids = Counter(json.loads(r.value)["id"] for r in records)
    assert len(ids) == total
    assert max(ids.values()) == 1
    fraud_ids = {json.loads(r.value)["id"] for r in records if r.topic == topics.fraud}
    assert fraud_ids == {tx.id for tx in txs if tx.amount > 900}
    assert committed_total(bootstrap, topics) == total


def test_detector_creates_missing_topics_and_stays_up_on_empty_input(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    detector = start_detector(bootstrap, topics, tmp_path)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        wanted = {topics.input, topics.legit, topics.fraud, topics.invalid}
        wait_until(lambda: wanted <= set(admin.list_topics()), 60, "topics to be created")
        partitions = admin.describe_topics([topics.input])[0]["partitions"]
    finally:
        admin.close()
    assert len(partitions) == 3
    assert detector.running(), detector.output()
    assert detector.stop() == 0
