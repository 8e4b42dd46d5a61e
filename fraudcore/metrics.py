"""The services' Prometheus metrics: what each exports, and when it counts.

fraudcore/metrics_server.py serves them on METRICS_PORT (serve_metrics), beside /health
(fraudcore/health.py).

Each service builds its own CollectorRegistry, never prometheus-client's process-wide default,
so that tests can build several in one process and nothing registered by a library leaks in.

Counting (detector): a record is counted when its output is durable, not when it is routed.
The open batch's Checkpoint tallies what it routed (fraudcore/checkpoint.py); on a committed
Kafka transaction (exactly_once) or once every output is acknowledged (at_least_once) the tally
is added to the counters and the latency histogram; an aborted batch is not counted, because
its input is read and counted again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from fraudcore.checkpoint import BatchState, BatchTally
from fraudcore.core.rule import RULES, Verdict
from fraudcore.errors import ClientError
from fraudcore.kafka.ports import Consumer

log = logging.getLogger(__name__)

LAG_UPDATE_INTERVAL_SECONDS = 1.0

# From an input record's timestamp to the commit of its output: 5 ms .. 10 min.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip


def new_registry() -> CollectorRegistry:
    """A registry of one service's metrics, with the usual process_* and python_* metrics."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


# --------------------------------------------------------------------------- the services' metrics


class ServiceMetrics:
    """The metrics of one service and the broker-reachability gauge that health also reports."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else new_registry()
        self.broker_reachable = Gauge(
            f"fraud_{service}_broker_reachable",
            "1 when the last health probe of the Kafka broker succeeded, else 0",
            registry=self.registry,
        )


class DetectorMetrics(ServiceMetrics):
    """What the detector exports. Counters move only when a batch's outputs are durable."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("detector", registry)
        self._wall_clock = wall_clock
        self._clock = clock
        self.transactions = Counter(
            "fraud_detector_transactions",
            "Input records whose output is committed (exactly_once) or acknowledged "
            "(at_least_once), by verdict",
            ["verdict"],
            registry=self.registry,
        )
        self.rule_hits = Counter(
            "fraud_detector_rule_hits",
            "Fraud records committed (or acknowledged), by rule that fired (fraud.rules header); "
            "a record both rules fired on counts once for each",
            ["rule"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "fraud_detector_dead_letters",
            "Records committed to the dead-letter topic, by reason code (error.reason header)",
            ["reason"],
            registry=self.registry,
        )
        self.latency = AgeHistogram(
            "fraud_detector_processing_latency_seconds",
            "From an input record's timestamp to the commit (or acknowledgement) of its output",
            LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.kafka_transactions = Counter(
            "fraud_detector_kafka_transactions",
            "Kafka transactions of the detector by outcome (exactly_once mode only)",
            ["outcome"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "fraud_detector_consumer_lag",
            "Records in an assigned input partition after the consumer's position "
            "(highwater - position)",
            ["topic", "partition"],
            registry=self.registry,
        )
        for verdict in Verdict:
            self.transactions.labels(verdict.value)
        for outcome in ("committed", "aborted"):
            self.kafka_transactions.labels(outcome)
        for rule in RULES:
            self.rule_hits.labels(rule)
        self._lag_updated_at: float | None = None
        self._lag_partitions: set[tuple[str, str]] = set()

    # A BatchObserver (fraudcore/checkpoint.py): counts a batch once it committed.

    def batch_opened(self) -> None:
        pass

    def batch_ended(self, state: BatchState, tally: BatchTally, transaction: bool) -> None:
        """Count a committed batch's records; a Kafka transaction by its outcome. An aborted or
        abandoned batch counts no record: its input is read, and counted, again."""
        if state is not BatchState.COMMITTED:
            if transaction:
                self.kafka_transactions.labels("aborted").inc()
            return
        now_ms = self._wall_clock() * 1000
        stamped: list[int] = []
        for verdict, stamps in tally.timestamps.items():
            if stamps:
                self.transactions.labels(verdict.value).inc(len(stamps))
                stamped += [t for t in stamps if t is not None and t >= 0]
        for reason, count in tally.reasons.items():
            self.dead_letters.labels(reason).inc(count)
        for rule, hits in tally.rule_hits().items():
            if hits:
                self.rule_hits.labels(rule).inc(hits)
        self.latency.observe_ages(now_ms, stamped)
        if transaction:
            self.kafka_transactions.labels("committed").inc()

    def maybe_update_lag(self, consumer: Consumer, force: bool = False) -> None:
        """Refresh the lag gauges from the consumer, at most once per LAG_UPDATE_INTERVAL_SECONDS.

        Runs on the thread that polls (a consumer is not thread-safe). Partitions that are
        no longer assigned are dropped from the gauge, so a rebalance leaves no stale series.
        """
        now = self._clock()
        if (
            not force
            and self._lag_updated_at is not None
            and now - self._lag_updated_at < LAG_UPDATE_INTERVAL_SECONDS
        ):
            return
        self._lag_updated_at = now
        seen: set[tuple[str, str]] = set()
        for tp in consumer.assignment():
            try:
                lag = consumer.lag(tp)
            except ClientError:
                continue
            if lag is None:
                continue
            labels = (tp.topic, str(tp.partition))
            self.consumer_lag.labels(*labels).set(lag)
            seen.add(labels)
        for labels in self._lag_partitions - seen:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(*labels)
        self._lag_partitions = seen


class AgeHistogram(Collector):
    """A Prometheus histogram of ages (now - timestamp), observed a whole batch at a time.

    prometheus-client's Histogram.observe takes a lock and searches the buckets for every value,
    a few microseconds per record; here a batch is sorted once and each bucket bound is one
    bisection, so a record costs a fraction of that. Exposed exactly like a Histogram (_bucket,
    _count, _sum), with the same `le` labels.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(sorted(buckets))
        self._cumulative = [0] * len(self._bounds)  # observations <= each bound
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_ages(self, now_ms: float, timestamps_ms: list[int]) -> None:
        """Observe max(0, now_ms - t) / 1000 seconds for each t (future timestamps count as 0)."""
        if not timestamps_ms:
            return
        stamps = sorted(timestamps_ms)
        total = len(stamps)
        # age <= bound  <=>  t >= now - bound; ages clamp at 0 (t >= now is within every bound)
        within = [total - bisect_left(stamps, now_ms - bound * 1000) for bound in self._bounds]
        past = bisect_left(stamps, now_ms)  # the stamps older than now: the only positive ages
        age_sum = (past * now_ms - sum(stamps[:past])) / 1000
        with self._lock:
            self._cumulative = [a + b for a, b in zip(self._cumulative, within, strict=True)]
            self._count += total
            self._sum += age_sum

    def collect(self) -> list[HistogramMetricFamily]:
        with self._lock:
            buckets = [
                (_le_label(bound), count)
                for bound, count in zip(self._bounds, self._cumulative, strict=True)
            ]
            buckets.append(("+Inf", self._count))
            age_sum = self._sum
        return [
            HistogramMetricFamily(
                self._name, self._documentation, buckets=buckets, sum_value=age_sum
            )
        ]


def _le_label(bound: float) -> str:
    """The `le` label prometheus-client's own Histogram writes for a bound (e.g. "1.0")."""
    label: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return label


class GeneratorMetrics(ServiceMetrics):
    """What the generator exports. Transactions count when the broker acknowledges them.

    No achieved-rate gauge: that is rate(fraud_generator_transactions_total[1m]) in PromQL.
    """

    def __init__(self, target_rate: float, registry: CollectorRegistry | None = None) -> None:
        super().__init__("generator", registry)
        self.transactions = Counter(
            "fraud_generator_transactions",
            "Transactions the broker acknowledged",
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "fraud_generator_delivery_failures",
            "Transactions that could not be delivered",
            registry=self.registry,
        )
        self.target_rate = Gauge(
            "fraud_generator_target_rate",
            "TRANSACTIONS_PER_SECOND, the rate the generator paces to",
            registry=self.registry,
        )
        self.target_rate.set(target_rate)

    def acknowledged(self, count: int = 1) -> None:
        """The broker acknowledged `count` more transactions."""
        self.transactions.inc(count)

    def failed(self, count: int = 1) -> None:
        """`count` more transactions could not be delivered."""
        self.delivery_failures.inc(count)
