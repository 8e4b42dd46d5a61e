"""The services' /metrics on a real broker: counters match what was really processed."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from tests.broker import free_port
from tests.http_probe import Samples, health, sample, scrape
from tests.kafka_helpers import Service, Topics, consume, create_topic, produce, wait_until
from tests.samples import BAD_VALUES, tutorial_record

pytestmark = pytest.mark.integration


def lags(samples: Samples, topic: str) -> dict[str, float]:
    """partition -> fraud_detector_consumer_lag of one topic."""
    found = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == "fraud_detector_consumer_lag" and label["topic"] == topic:
            found[label["partition"]] = value
    return found


def verdicts(samples: Samples) -> dict[str, float]:
    return {
        verdict: sample(samples, "fraud_detector_transactions_total", verdict=verdict)
        for verdict in ("legit", "fraud", "invalid")
    }


def a_mix(seed: int, count: int) -> tuple[list[tuple[bytes | None, bytes | None]], Counter[str]]:
    """Valid transactions of a known verdict plus every kind of invalid value."""
    factory = TransactionFactory(seed=seed)
    txs = [factory.next() for _ in range(count)]
    records: list[tuple[bytes | None, bytes | None]] = [(encode_key(t), encode(t)) for t in txs]
    records += [(b"edge-1", tutorial_record(900)), (b"edge-2", tutorial_record(900.01))]
    expected = Counter(
        {
            "legit": sum(1 for t in txs if t.amount <= 900) + 1,
            "fraud": sum(1 for t in txs if t.amount > 900) + 1,
        }
    )
    records += [(f"bad-{i}".encode(), value) for i, (_, value, _) in enumerate(BAD_VALUES)]
    expected["invalid"] = len(BAD_VALUES)
    return records, expected


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_detector_counters_match_the_records_processed(
    bootstrap: str, topics: Topics, tmp_path: Path, guarantee: str
) -> None:
    create_topic(bootstrap, topics.input, partitions=3)
    records, expected = a_mix(seed=21, count=400)
    produce(bootstrap, topics.input, records)
    port = free_port()
    detector = Service.module(
        "detector",
        {**topics.env(bootstrap), "PROCESSING_GUARANTEE": guarantee, "METRICS_PORT": str(port)},
        tmp_path,
    )
    try:
        outputs = [topics.legit, topics.fraud, topics.invalid]
        assert len(consume(bootstrap, outputs, len(records), timeout=90)) == len(records)
        wait_until(
            lambda: verdicts(scrape(port)) == expected,
            30,
            f"counters {dict(expected)} (output: {detector.output()[-2000:]})",
        )
        samples = scrape(port)
        reasons = Counter(reason for _, _, reason in BAD_VALUES)
        for reason, count in reasons.items():
            assert sample(samples, "fraud_detector_dead_letters_total", reason=reason) == count
        assert sample(samples, "fraud_detector_processing_latency_seconds_count") == len(records)
        committed = sample(samples, "fraud_detector_kafka_transactions_total", outcome="committed")
        aborted = sample(samples, "fraud_detector_kafka_transactions_total", outcome="aborted")
        assert aborted == 0
        if guarantee == "exactly_once":
            assert committed >= 1
        else:
            assert committed == 0
        # Everything is read: no lag left on any of the three input partitions.
        wait_until(
            lambda: lags(scrape(port), topics.input) == {"0": 0, "1": 0, "2": 0},
            30,
            "zero lag on every input partition",
        )
        status, body = health(port)
        assert (status, body["status"]) == (200, "ok"), body

        # A second batch adds exactly its own records: nothing is counted twice.
        more, more_expected = a_mix(seed=22, count=100)
        produce(bootstrap, topics.input, more)
        total = expected + more_expected
        wait_until(lambda: verdicts(scrape(port)) == total, 60, f"counters {dict(total)}")
        assert detector.running(), detector.output()
    finally:
        assert detector.stop() == 0, detector.output()


def acknowledged_rate(port: int, seconds: float = 5.0) -> float:
    """Acknowledged transactions per second over `seconds`, from two scrapes of the counter:
    what PromQL's rate(fraud_generator_transactions_total[...]) gives a dashboard."""
    first, started = sample(scrape(port), "fraud_generator_transactions_total"), time.monotonic()
    time.sleep(seconds)
    last, ended = sample(scrape(port), "fraud_generator_transactions_total"), time.monotonic()
    return (last - first) / (ended - started)


@pytest.mark.slow
def test_generator_reports_acknowledged_transactions_and_its_rates(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    port = free_port()
    generator = Service.module(
        "generator",
        {
            **topics.env(bootstrap),
            "TRANSACTIONS_PER_SECOND": "200",
            "METRICS_PORT": str(port),
        },
        tmp_path,
    )
    try:
        wait_until(lambda: health(port)[0] == 200, 60, "the generator's /health to say ok")
        wait_until(
            lambda: 150 <= acknowledged_rate(port) <= 250,
            40,
            "an acknowledged rate near the target of 200/s",
        )
        samples = scrape(port)
        assert "fraud_generator_achieved_rate" not in {name for name, _ in samples}
        assert sample(samples, "fraud_generator_target_rate") == 200
        assert sample(samples, "fraud_generator_delivery_failures_total") == 0
        acknowledged = sample(samples, "fraud_generator_transactions_total")
        assert acknowledged > 0
    finally:
        assert generator.stop() == 0, generator.output()
    # Every transaction counted as acknowledged is in the topic.
    in_topic = consume(bootstrap, [topics.input], int(acknowledged), timeout=30)
    assert len(in_topic) >= acknowledged
