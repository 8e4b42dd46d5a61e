"""fraudcore/metrics.py and metrics_server.py without a broker: counting on commit, lag, the
generator's counters, the server."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from detector.config import DetectorSettings
from detector.stats import render_stats
from fraudcore.checkpoint import BatchState, BatchTally
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.rule import Verdict, reason_code
from fraudcore.health import BrokerHealth
from fraudcore.kafka.types import TopicPartition
from fraudcore.metrics import (
    LATENCY_BUCKETS,
    AgeHistogram,
    DetectorMetrics,
    GeneratorMetrics,
)
from fraudcore.metrics_server import MetricsPortError, MetricsServer, serve_metrics
from generator.config import GeneratorSettings
from tests.fakes import FakeClock, FakeConsumer, FlakyProbe


def value(metrics: Any, name: str, **labels: str) -> float | None:
    found = metrics.registry.get_sample_value(name, labels or None)
    return None if found is None else float(found)


def verdict_counts(metrics: DetectorMetrics) -> dict[str, float | None]:
    return {
        v.value: value(metrics, "fraud_detector_transactions_total", verdict=v.value)
        for v in Verdict
    }


# --------------------------------------------------------------------------- detector counting


class Batch:
    """Drives DetectorMetrics as a Checkpoint does: a tally of what the open batch routed, then
    its outcome (fraudcore/checkpoint.py)."""

    def __init__(self, metrics: DetectorMetrics) -> None:
        self._metrics = metrics
        self.tally = BatchTally()

    def routed(
        self, verdict: Verdict, timestamp_ms: int | None, reason: str = "", rules: bytes = b""
    ) -> None:
        self.tally.routed(verdict, timestamp_ms, reason, rules)

    def _end(self, state: BatchState, transaction: bool) -> None:
        self._metrics.batch_ended(state, self.tally, transaction)
        self.tally = BatchTally()

    def committed(self, transaction: bool = False) -> None:
        self._end(BatchState.COMMITTED, transaction)

    def aborted(self) -> None:
        self._end(BatchState.ABORTED, transaction=True)

    def discarded(self) -> None:
        """at_least_once: given up without a Kafka transaction."""
        self._end(BatchState.ABORTED, transaction=False)


def test_rule_hits_count_each_rule_that_fired_once_their_batch_commits() -> None:
    metrics = DetectorMetrics()
    batch = Batch(metrics)
    for rules in (b"amount", b"velocity", b"amount,velocity", b"velocity"):
        batch.routed(Verdict.FRAUD, None, "", rules)
    batch.routed(Verdict.LEGIT, None)

    def hits() -> dict[str, float | None]:
        return {
            rule: value(metrics, "fraud_detector_rule_hits_total", rule=rule)
            for rule in ("amount", "velocity")
        }

    assert hits() == {"amount": 0, "velocity": 0}  # both series exist from the start
    pending = batch.tally.counts()
    assert (pending["fraud"], pending["rule.amount"], pending["rule.velocity"]) == (4, 2, 3)
    batch.committed(transaction=True)
    assert hits() == {"amount": 2, "velocity": 3}
    assert verdict_counts(metrics)["fraud"] == 4  # the verdict counter keeps its meaning
    batch.routed(Verdict.FRAUD, None, "", b"velocity")
    batch.aborted()  # read and counted again later
    batch.committed()
    assert hits() == {"amount": 2, "velocity": 3}


def test_the_stats_line_counts_fraud_by_rule() -> None:
    window = Counter({"legit": 8, "fraud": 2, "rule.amount": 1, "rule.velocity": 2})
    line = render_stats(window, 1.0, ("amount", "velocity"))
    assert "legit=8 fraud=2 (amount 1, velocity 2) invalid=0" in line


def test_records_count_only_when_their_batch_commits() -> None:
    wall = FakeClock(2000.0)
    metrics = DetectorMetrics(wall_clock=wall)
    batch = Batch(metrics)
    batch.routed(Verdict.LEGIT, 1_999_500)
    batch.routed(Verdict.FRAUD, 1_999_000)
    batch.routed(Verdict.INVALID, 1_998_000, "not_json: Expecting value: line 1 column 1")
    assert verdict_counts(metrics) == {"legit": 0, "fraud": 0, "invalid": 0}

    batch.committed(transaction=True)
    assert verdict_counts(metrics) == {"legit": 1, "fraud": 1, "invalid": 1}
    assert value(metrics, "fraud_detector_dead_letters_total", reason="not_json") == 1
    assert value(metrics, "fraud_detector_kafka_transactions_total", outcome="committed") == 1
    # Latency: from each record's timestamp to the commit, 0.5 + 1 + 2 seconds.
    assert value(metrics, "fraud_detector_processing_latency_seconds_count") == 3
    assert value(metrics, "fraud_detector_processing_latency_seconds_sum") == pytest.approx(3.5)
    le_1 = value(metrics, "fraud_detector_processing_latency_seconds_bucket", le="1.0")
    assert le_1 == 2

    batch.committed(transaction=True)  # an empty batch adds no records
    assert verdict_counts(metrics) == {"legit": 1, "fraud": 1, "invalid": 1}


def test_an_aborted_batch_is_not_counted_and_its_reprocessing_counts_once() -> None:
    metrics = DetectorMetrics()
    batch = Batch(metrics)
    for _ in range(3):
        batch.routed(Verdict.LEGIT, None)
    batch.aborted()
    assert verdict_counts(metrics)["legit"] == 0
    assert value(metrics, "fraud_detector_kafka_transactions_total", outcome="aborted") == 1
    for _ in range(3):  # the same records, read again after the rewind
        batch.routed(Verdict.LEGIT, None)
    batch.committed(transaction=True)
    assert verdict_counts(metrics)["legit"] == 3
    assert value(metrics, "fraud_detector_processing_latency_seconds_count") == 0


def test_discard_forgets_an_uncommitted_batch_and_at_least_once_has_no_transactions() -> None:
    metrics = DetectorMetrics()
    batch = Batch(metrics)
    batch.routed(Verdict.FRAUD, 5)
    batch.discarded()
    batch.committed()  # at_least_once: acknowledged, no Kafka transaction
    assert verdict_counts(metrics)["fraud"] == 0
    batch.routed(Verdict.FRAUD, 5)
    batch.committed()
    assert verdict_counts(metrics)["fraud"] == 1
    assert value(metrics, "fraud_detector_kafka_transactions_total", outcome="committed") == 0


def test_latency_is_never_negative_and_records_without_timestamp_are_skipped() -> None:
    metrics = DetectorMetrics(wall_clock=FakeClock(10.0))
    batch = Batch(metrics)
    batch.routed(Verdict.LEGIT, 20_000)  # stamped in the future (clock skew)
    batch.routed(Verdict.LEGIT, -1)  # no timestamp
    batch.committed()
    assert value(metrics, "fraud_detector_processing_latency_seconds_count") == 1
    assert value(metrics, "fraud_detector_processing_latency_seconds_sum") == 0


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("not_json: Expecting value", "not_json"),
        ("empty: the record has no value", "empty"),
        ("too_deep", "too_deep"),
        ("", "unknown"),
    ],
)
def test_reason_code(reason: str, code: str) -> None:
    assert reason_code(reason) == code


class LagConsumer(FakeConsumer):
    """The port's consumer, with highwater and position per partition."""

    def __init__(self) -> None:
        super().__init__([], {}, 1)
        self.highwaters: dict[TopicPartition, int | None] = {}
        self.positions: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def lag(self, tp: TopicPartition) -> int | None:
        highwater = self.highwaters[tp]
        return None if highwater is None else highwater - self.positions[tp]


def test_lag_per_partition_and_revoked_partitions_disappear() -> None:
    clock = FakeClock()
    metrics = DetectorMetrics(clock=clock)
    consumer = LagConsumer()
    p0, p1, p2 = (TopicPartition("in", p) for p in range(3))
    consumer.highwaters = {p0: 100, p1: 50, p2: None}  # p2: no fetch response yet
    consumer.positions = {p0: 90, p1: 50, p2: 0}
    metrics.maybe_update_lag(consumer)
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="0") == 10
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="1") == 0
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="2") is None

    consumer.highwaters = {p1: 70}  # a rebalance took p0 away
    consumer.positions = {p1: 60}
    metrics.maybe_update_lag(consumer)  # too soon: unchanged
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="0") == 10
    clock.now += 1.0
    metrics.maybe_update_lag(consumer)
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="0") is None
    assert value(metrics, "fraud_detector_consumer_lag", topic="in", partition="1") == 10


def test_registries_are_per_instance() -> None:
    first, second = DetectorMetrics(), DetectorMetrics()
    batch = Batch(first)
    batch.routed(Verdict.LEGIT, None)
    batch.committed()
    assert verdict_counts(first)["legit"] == 1
    assert verdict_counts(second)["legit"] == 0
    GeneratorMetrics(10.0)
    GeneratorMetrics(20.0)  # no "Duplicated timeseries" from a shared default registry


# --------------------------------------------------------------------------- generator


def test_generator_counts_acknowledged_and_failed_and_reports_its_target() -> None:
    metrics = GeneratorMetrics(250.0)
    assert value(metrics, "fraud_generator_target_rate") == 250
    for _ in range(500):
        metrics.acknowledged()
    metrics.failed()
    assert value(metrics, "fraud_generator_transactions_total") == 500
    assert value(metrics, "fraud_generator_delivery_failures_total") == 1
    # The achieved rate is PromQL's rate() of the counter, no gauge of its own (README "Metrics").
    assert value(metrics, "fraud_generator_achieved_rate") is None


# --------------------------------------------------------------------------- HTTP server


@pytest.fixture
def served() -> Iterator[tuple[str, DetectorMetrics, FlakyProbe, BrokerHealth]]:
    metrics = DetectorMetrics()
    probe = FlakyProbe()
    health = BrokerHealth("detector", probe, gauge=metrics.broker_reachable)
    server = MetricsServer(0, metrics.registry, health, "detector", host="127.0.0.1").start()
    try:
        yield f"http://127.0.0.1:{server.port}", metrics, probe, health
    finally:
        server.close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own server
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_serves_metrics_in_the_prometheus_format(
    served: tuple[str, DetectorMetrics, FlakyProbe, BrokerHealth],
) -> None:
    url, metrics, _, _ = served
    batch = Batch(metrics)
    batch.routed(Verdict.INVALID, None, "empty: the record has no value")
    batch.committed(transaction=True)
    status, content_type, body = get(url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in families["fraud_detector_transactions"].samples
    }
    assert samples[("fraud_detector_transactions_total", (("verdict", "invalid"),))] == 1
    assert "process_cpu_seconds" in families
    assert "fraud_detector_processing_latency_seconds" in families


def test_server_health_answers_200_then_503(
    served: tuple[str, DetectorMetrics, FlakyProbe, BrokerHealth],
) -> None:
    url, _, probe, health = served
    status, _, body = get(url + "/health")
    assert status == 503  # no probe yet
    health.check_once()
    status, content_type, body = get(url + "/health")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["status"] == "ok"
    probe.up = False
    health.check_once()
    status, _, body = get(url + "/health")
    assert status == 503
    assert json.loads(body)["broker"]["reachable"] is False
    assert get(url + "/nope")[0] == 404


def test_server_routes_as_before(
    served: tuple[str, DetectorMetrics, FlakyProbe, BrokerHealth],
) -> None:
    """/ lists the paths; a trailing slash or a query string still finds them; OpenMetrics on
    request; a method other than GET is not implemented."""
    url, _, _, _ = served
    assert get(url + "/") == (200, "text/plain; charset=utf-8", "/metrics /health\n")
    status, _, body = get(url + "/metrics/?from=test")
    assert status == 200
    assert "fraud_detector_transactions_total" in body
    assert get(url + "/health/")[0] == 503  # no probe yet
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    request = urllib.request.Request(url + "/metrics", headers=accept)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own server
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().endswith(b"# EOF\n")
    post = urllib.request.Request(url + "/metrics", data=b"", method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=10)  # noqa: S310 - our own server
    assert refused.value.code == 501
    refused.value.close()


def test_metrics_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert load_settings(DetectorSettings).metrics_port is None
    assert serve_metrics(load_settings(GeneratorSettings), GeneratorMetrics(1.0)) is None
    monkeypatch.setenv("METRICS_PORT", "")
    assert load_settings(DetectorSettings).metrics_port is None
    monkeypatch.setenv("METRICS_PORT", "8000")
    assert load_settings(GeneratorSettings).metrics_port == 8000
    # 0 is off, as unset is (compose's ${VAR:-default} cannot unset a variable).
    monkeypatch.setenv("METRICS_PORT", "0")
    assert load_settings(DetectorSettings).metrics_port is None
    assert serve_metrics(load_settings(GeneratorSettings), GeneratorMetrics(1.0)) is None
    for bad in ("-1", "65536", "http"):
        monkeypatch.setenv("METRICS_PORT", bad)
        with pytest.raises(SettingsError, match="METRICS_PORT"):
            load_settings(DetectorSettings)


def test_a_busy_metrics_port_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = DetectorMetrics()
    busy = MetricsServer(0, metrics.registry, host="")
    try:
        monkeypatch.setenv("METRICS_PORT", str(busy.port))
        with pytest.raises(MetricsPortError, match=f"METRICS_PORT={busy.port}"):
            serve_metrics(load_settings(DetectorSettings), metrics)
    finally:
        busy.close()


def test_age_histogram_matches_prometheus_clients_own_histogram() -> None:
    rng = random.Random(4)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = AgeHistogram("age_seconds", "ages", LATENCY_BUCKETS, registry=ours)
    reference = Histogram("age_seconds", "ages", buckets=LATENCY_BUCKETS, registry=theirs)
    for _batch in range(50):
        now_ms = 1_700_000_000_000 + rng.randint(0, 10**6)
        # integer-millisecond ages (what record timestamps give): on bounds, around them, beyond
        # the last, and from the future (clock skew, counted as 0)
        ages_ms = [
            rng.choice([0, 5, 10, 1000, 600_000]) + rng.choice([-1, 0, 1]) for _ in range(20)
        ]
        ages_ms += [rng.randint(-5000, 700_000) for _ in range(200)]
        histogram.observe_ages(now_ms, [now_ms - age for age in ages_ms])
        for age in ages_ms:
            reference.observe(max(0, age) / 1000)
    expected = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in theirs.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in ours.collect()
        for s in family.samples
    }
    assert got.keys() == expected.keys()
    for key, count in expected.items():
        assert got[key] == pytest.approx(count), key
