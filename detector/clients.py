"""The detector's Kafka clients and topics, as the port (fraudcore/kafka_port.py) makes them."""

from __future__ import annotations

from detector.config import DetectorSettings
from fraudcore import kafka_port
from fraudcore.core.rule import Verdict
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES, TopicSpec, detector_topics
from fraudcore.kafka_port import Consumer, Producer

TRANSACTIONAL_RETRY_BACKOFF_MS = 20


def output_topics(settings: DetectorSettings) -> dict[Verdict, str]:
    return {
        Verdict.LEGIT: settings.legit_topic,
        Verdict.FRAUD: settings.fraud_topic,
        Verdict.INVALID: settings.dead_letter_topic,
    }


def required_topics(settings: DetectorSettings) -> list[TopicSpec]:
    return detector_topics(
        settings.transactions_topic,
        settings.legit_topic,
        settings.fraud_topic,
        settings.dead_letter_topic,
        settings.transactions_topic_partitions,
    )


def make_consumer(settings: DetectorSettings) -> Consumer:
    """A group member that never commits by itself and reads only committed input."""
    return kafka_port.new_consumer(
        settings,
        "detector",
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
        max_poll_records=settings.max_poll_records,
        fetch_max_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
        max_partition_fetch_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
        # kafka-python's own client metrics (nothing here reads them) cost CPU on every record:
        # off, fetching a record costs ~7% less CPU (bench/, README "Performance").
        metrics_enabled=False,
    )


def make_producer(settings: DetectorSettings) -> Producer:
    """Idempotent always; transactional in exactly_once mode."""
    options: dict[str, object] = {}
    exactly_once = settings.processing_guarantee == "exactly_once"
    if exactly_once:
        options["transactional_id"] = settings.effective_transactional_id
        options["transaction_timeout_ms"] = settings.transaction_timeout_ms
        # A transaction's first request often finds the broker still writing the previous
        # one's markers (CONCURRENT_TRANSACTIONS); kafka-python sleeps retry_backoff_ms before
        # each retry of it. The Java client retries that case after 20 ms, not 100.
        options["retry_backoff_ms"] = TRANSACTIONAL_RETRY_BACKOFF_MS
    return kafka_port.new_producer(
        settings,
        "detector",
        transactional=exactly_once,
        **options,
        batch_size=256 * 1024,
        max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024,
    )
