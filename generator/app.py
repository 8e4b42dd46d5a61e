"""Publish random transactions, keyed by source account, on an absolute schedule."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from fraudcore import kafka, service
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from fraudcore.core.pacing import Pacer
from fraudcore.core.scenarios import LABEL_HEADER, RealisticSource
from fraudcore.core.topics import generator_topics
from fraudcore.errors import BufferFullError, KafkaSecurityError
from fraudcore.kafka.ports import Producer, ProducerConfig
from fraudcore.kafka.types import Headers
from fraudcore.metrics import GeneratorMetrics
from fraudcore.runtime import StatsLine, StopFlag, freeze_startup_heap
from generator.config import GeneratorSettings

log = logging.getLogger(__name__)

# Most sends per round of the loop: between rounds come the stats line, counting what the broker
# acknowledged and the rate sample, so they keep up even when the generator runs flat out.
MAX_ROUND = 1000

# Longest single sleep, so that a stop request is noticed quickly even at 10 records/s.
MAX_IDLE_SECONDS = 0.05


def make_producer(settings: GeneratorSettings) -> Producer:
    """An idempotent producer: retries can neither lose nor duplicate a record."""
    config = ProducerConfig(batch_bytes=64 * 1024, delivery_timeout_ms=120_000, max_block_ms=10_000)
    return kafka.driver(settings).producer(settings, "generator", config)


class Generator:
    """The send loop, kept apart from main() so tests and the benchmark can drive it."""

    def __init__(
        self,
        settings: GeneratorSettings,
        producer: Producer,
        stop: StopFlag,
        *,
        metrics: GeneratorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.stop = stop
        # Counts acknowledged transactions (fraudcore/metrics.py).
        self.metrics = metrics or GeneratorMetrics(settings.transactions_per_second)
        self.failed = 0
        self.stats = StatsLine(log, settings.stats_interval_seconds, self._render)

    def _render(self, window: Counter[str], seconds: float) -> str:
        rate = window["sent"] / seconds
        target = self.settings.transactions_per_second
        return f"generator: {rate:.1f} tx/s (target {target:g}/s)"

    def _settle(self) -> None:
        """Count the sends the broker has answered (once per round of sends); log failures."""
        answered = self.producer.deliveries()
        if answered.failed:
            self.failed += answered.failed
            self.metrics.failed(answered.failed)
            log.error(
                "%d transaction(s) could not be delivered: %s",
                answered.failed,
                answered.first_failure,
            )
        if answered.acknowledged:
            self.metrics.acknowledged(answered.acknowledged)

    def _send(self, topic: str, records: list[tuple[bytes, bytes, Headers]]) -> int:
        """Send the round's records, waiting out a full buffer. How many went out: fewer than
        all only when a stop came while the buffer was full."""
        sent = 0
        while sent < len(records):
            try:
                self.producer.send(
                    (topic, key, value, headers) for key, value, headers in records[sent:]
                )
                return len(records)
            except BufferFullError as full:
                sent += full.sent
                log.warning("producer buffer full or metadata unavailable; the broker may be down")
                self._settle()
                if self.stop.is_set():
                    break
        return sent

    def _make_round(self) -> Callable[[int], list[tuple[bytes, bytes, Headers]]]:
        """The round maker of GENERATOR_PROFILE: uniform keeps today's records and path."""
        settings = self.settings
        if settings.generator_profile == "uniform":
            factory = TransactionFactory(
                settings.random_seed, account_pool_size=settings.account_pool_size
            )
            return lambda due: [(encode_key(tx), encode(tx), None) for tx in factory.take(due)]
        source = RealisticSource(
            settings.random_seed,
            account_pool_size=settings.account_pool_size,
            scenarios=settings.scenario_shares,
        )
        log.info(
            "realistic profile, scenarios: %s",
            settings.fraud_scenarios or "none",
        )
        labels = {name: [(LABEL_HEADER, name.encode())] for name in source.scenario_names}
        return lambda due: [
            (encode_key(tx), encode(tx), None if label is None else labels[label])
            for tx, label in source.take(due)
        ]

    def run(self) -> int:
        settings = self.settings
        make_round = self._make_round()
        # Fetch the topic's metadata first, so the first send does not stall the schedule.
        self.producer.prepare(settings.transactions_topic)
        freeze_startup_heap()
        pacer = Pacer(settings.transactions_per_second, time.monotonic)
        limit = settings.transactions_count
        topic = settings.transactions_topic
        sent = 0
        while not self.stop.is_set() and (limit is None or sent < limit):
            due = min(pacer.due(), MAX_ROUND)
            if limit is not None:
                due = min(due, limit - sent)
            if due == 0:
                self.stop.wait(min(pacer.seconds_until_next(), MAX_IDLE_SECONDS))
            # Make the round's records first, then send them: two tight loops run measurably
            # faster than one that alternates between making a record and kafka-python's send.
            records = make_round(due)
            sent_now = self._send(topic, records)
            sent += sent_now
            self.stats.add("sent", sent_now)
            self.stats.maybe_log()
            self._settle()
        log.info("flushing %d sent transactions", sent)
        self.producer.flush()
        self._settle()  # flush() returns once every send is answered
        self.stats.maybe_log(force=True)
        if self.failed:
            log.error("%d of %d transactions were not delivered", self.failed, sent)
            return 1
        log.info("done: %d transactions delivered", sent)
        return 0


def main() -> int:
    try:
        settings, stop, metrics, admin, _liveness = service.start(
            "generator",
            GeneratorSettings,
            lambda settings: GeneratorMetrics(settings.transactions_per_second),
        )
    except service.ServiceExit as exit_:
        return exit_.code
    topics = generator_topics(settings.transactions_topic, settings.transactions_topic_partitions)
    with admin:
        try:
            admin.ensure_topics(topics)
        except KafkaSecurityError as exc:  # e.g. not authorized to write the topic: no retry
            log.error("%s", exc)
            return 1
    producer = make_producer(settings)
    try:
        return Generator(settings, producer, stop, metrics=metrics).run()
    finally:
        producer.close(10)
