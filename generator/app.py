"""Publish random transactions, keyed by source account, on an absolute schedule."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque

from kafka.errors import KafkaTimeoutError
from kafka.producer.future import FutureRecordMetadata

from fraudcore import service
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from fraudcore.core.pacing import Pacer
from fraudcore.kafka_io import (
    KafkaSecurityError,
    TopicSpec,
    ensure_topics,
    producer_options,
)
from fraudcore.metrics import GeneratorMetrics
from fraudcore.runtime import StatsLine, StopFlag, freeze_startup_heap
from generator.config import GeneratorSettings
from kafka import KafkaProducer

log = logging.getLogger(__name__)

# Most sends per round of the loop: between rounds come the stats line, counting what the broker
# acknowledged and the rate sample, so they keep up even when the generator runs flat out.
MAX_ROUND = 1000

# Longest single sleep, so that a stop request is noticed quickly even at 10 records/s.
MAX_IDLE_SECONDS = 0.05


def make_producer(settings: GeneratorSettings) -> KafkaProducer:
    """An idempotent producer: retries can neither lose nor duplicate a record."""
    return KafkaProducer(
        **producer_options(settings, "generator"),
        batch_size=64 * 1024,
        delivery_timeout_ms=120_000,
        max_block_ms=10_000,
    )


class Generator:
    """The send loop, kept apart from main() so tests and the benchmark can drive it."""

    def __init__(
        self,
        settings: GeneratorSettings,
        producer: KafkaProducer,
        stop: StopFlag,
        *,
        metrics: GeneratorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.stop = stop
        # Counts acknowledged transactions and the achieved rate (fraudcore/metrics.py).
        self.metrics = metrics or GeneratorMetrics(settings.transactions_per_second)
        self.failed = 0
        self.stats = StatsLine(log, settings.stats_interval_seconds, self._render)
        # Sends not yet answered by the broker, oldest first. Settled once per round of sends:
        # a callback per record would run on the producer's I/O thread and compete for the GIL.
        self._in_flight: deque[FutureRecordMetadata] = deque()

    def _render(self, window: Counter[str], seconds: float) -> str:
        rate = window["sent"] / seconds
        target = self.settings.transactions_per_second
        return f"generator: {rate:.1f} tx/s (target {target:g}/s)"

    def _settle(self) -> None:
        """Count the sends the broker has answered; log each one that failed."""
        in_flight, delivered = self._in_flight, 0
        while in_flight and in_flight[0].is_done:
            future = in_flight.popleft()
            if future.exception is None:
                delivered += 1
            else:
                self.failed += 1
                self.metrics.failed(future.exception)
                log.error("a transaction could not be delivered: %r", future.exception)
        if delivered:
            self.metrics.acknowledged(delivered)

    def _send_when_buffer_frees(self, topic: str, key: bytes, value: bytes) -> bool:
        """Send one record that found the producer's buffer full. False if stopped first."""
        while True:
            log.warning("producer buffer full or metadata unavailable; the broker may be down")
            self._settle()
            if self.stop.is_set():
                return False
            try:
                self._in_flight.append(self.producer.send(topic, key=key, value=value))
                return True
            except KafkaTimeoutError:
                continue

    def run(self) -> int:
        settings = self.settings
        factory = TransactionFactory(settings.random_seed)
        # Fetch the topic's metadata first, so the first send does not stall the schedule.
        self.producer.partitions_for(settings.transactions_topic)
        freeze_startup_heap()
        pacer = Pacer(settings.transactions_per_second, time.monotonic)
        limit = settings.transactions_count
        topic, send, track = settings.transactions_topic, self.producer.send, self._in_flight.append
        sent = 0
        while not self.stop.is_set() and (limit is None or sent < limit):
            due = min(pacer.due(), MAX_ROUND)
            if limit is not None:
                due = min(due, limit - sent)
            if due == 0:
                self.stop.wait(min(pacer.seconds_until_next(), MAX_IDLE_SECONDS))
            # Make the round's records first, then send them: two tight loops run measurably
            # faster than one that alternates between making a record and kafka-python's send.
            records = [(encode_key(tx), encode(tx)) for tx in factory.take(due)]
            sent_before = sent
            for key, value in records:
                try:
                    track(send(topic, key=key, value=value))
                except KafkaTimeoutError:
                    if not self._send_when_buffer_frees(topic, key, value):
                        break
                sent += 1
            self.stats.add("sent", sent - sent_before)
            self.stats.maybe_log()
            self._settle()
            self.metrics.sample_rate()
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
    topic = TopicSpec(
        settings.transactions_topic, settings.transactions_topic_partitions, access=("WRITE",)
    )
    with admin:
        try:
            ensure_topics(admin, [topic])
        except KafkaSecurityError as exc:  # e.g. not authorized to write the topic: no retry
            log.error("%s", exc)
            return 1
    producer = make_producer(settings)
    try:
        return Generator(settings, producer, stop, metrics=metrics).run()
    finally:
        producer.close(timeout=10)
