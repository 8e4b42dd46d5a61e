"""The detector's Kafka clients and topics, made by the configured driver (fraudcore/kafka/)."""

from __future__ import annotations

import logging

from detector.config import DetectorSettings
from fraudcore import kafka
from fraudcore.core.rule import Verdict
from fraudcore.core.topics import (
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    TopicSpec,
    changelog_specs,
    detector_topics,
)
from fraudcore.kafka.ports import Admin, Consumer, GroupConsumerConfig, Producer, ProducerConfig

log = logging.getLogger(__name__)


def output_topics(settings: DetectorSettings) -> dict[Verdict, str]:
    return {
        Verdict.LEGIT: settings.legit_topic,
        Verdict.FRAUD: settings.fraud_topic,
        Verdict.INVALID: settings.dead_letter_topic,
    }


def required_topics(settings: DetectorSettings) -> list[TopicSpec]:
    partitions = settings.transactions_topic_partitions
    return detector_topics(
        settings.transactions_topic,
        settings.legit_topic,
        settings.fraud_topic,
        settings.dead_letter_topic,
        partitions,
    ) + changelog_specs(settings.consumer_group, settings.changelog_rule_names, partitions)


def prepare_cluster(settings: DetectorSettings, admin: Admin) -> DetectorSettings:
    """Create the missing topics and check our access to them; the settings for this cluster
    (DetectorSettings.for_cluster)."""
    admin.ensure_topics(required_topics(settings))
    brokers = admin.describe_cluster()
    fitted = settings.for_cluster(brokers)
    if fitted is not settings:
        log.info(
            "a cluster of %d brokers: TRANSACTION_TIMEOUT_MS defaults to %d there, room for a "
            "broker's failover",
            brokers,
            fitted.transaction_timeout_ms,
        )
    return fitted


def make_consumer(settings: DetectorSettings) -> Consumer:
    """A group member that never commits by itself and reads only committed input."""
    config = GroupConsumerConfig(
        group_id=settings.consumer_group,
        session_timeout_ms=settings.session_timeout_ms,
        max_poll_records=settings.max_poll_records,
    )
    return kafka.driver(settings).consumer(settings, "detector", config)


def make_producer(settings: DetectorSettings) -> Producer:
    """Idempotent always; transactional in exactly_once mode. Its requests fit a dead letter
    (a whole invalid record plus headers)."""
    exactly_once = settings.processing_guarantee == "exactly_once"
    config = ProducerConfig(
        transactional_id=settings.effective_transactional_id if exactly_once else None,
        transaction_timeout_ms=settings.transaction_timeout_ms,
        batch_bytes=256 * 1024,
        max_request_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES + 64 * 1024,
    )
    return kafka.driver(settings).producer(settings, "detector", config)
