"""What every confluent-kafka client of the adapter shares: its configuration (where the broker
is, who we are, how we log in, where librdkafka logs), its error reporting, and the conversions
between librdkafka's partitions and messages and the project's types."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message
from confluent_kafka import TopicPartition as RdTopicPartition

from fraudcore.config import CommonSettings
from fraudcore.errors import KafkaSecurityError
from fraudcore.kafka.confluent.errors import client_error
from fraudcore.kafka.types import Committed, Record, TopicPartition

log = logging.getLogger("confluent_kafka")

RECONNECT_BACKOFF_MAX_MS = 1000
# How long a call that asks the broker something (committed offsets, metadata) may take.
REQUEST_TIMEOUT_SECONDS = 10.0

T = TypeVar("T")


class QuietErrors:
    """librdkafka's error callback: one line per distinct error per minute, not one per event.
    During a broker's outage it reports every failed connection attempt."""

    INTERVAL_SECONDS = 60.0

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, error: Any) -> None:
        text = f"{error.name()}: {error.str()}"
        now = time.monotonic()
        if now - self._last.get(text, float("-inf")) >= self.INTERVAL_SECONDS:
            self._last[text] = now
            log.warning("librdkafka: %s", text)


def client_config(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """What every librdkafka client of ours is told: where the broker is, who we are, how we
    log in, where it logs."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_broker_url,
        "client.id": client_id,
        "reconnect.backoff.max.ms": RECONNECT_BACKOFF_MAX_MS,
        "logger": log,
        "error_cb": QuietErrors(),
    }
    if settings.kafka_security_protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = settings.kafka_security_protocol.lower()
    if settings.uses_sasl:
        password = settings.sasl_password
        if password is None or not settings.kafka_sasl_username:  # settings validation forbids it
            raise KafkaSecurityError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = password.get_secret_value()
    if settings.uses_tls:
        if settings.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file is not None:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        if settings.kafka_ssl_key_file is not None:
            config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
        key_password = settings.ssl_key_password
        if key_password is not None:
            config["ssl.key.password"] = key_password.get_secret_value()
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none"
        )
    return config


def mapped(call: Callable[[], T]) -> T:
    """Run a confluent-kafka call, its errors mapped onto the project's."""
    try:
        return call()
    except KafkaException as exc:
        raise client_error(exc) from exc


def to_rd(tp: TopicPartition, offset: int | None = None, metadata: str | None = None) -> Any:
    if offset is None:
        return RdTopicPartition(tp.topic, tp.partition)
    if metadata is None:
        return RdTopicPartition(tp.topic, tp.partition, offset)
    return RdTopicPartition(tp.topic, tp.partition, offset, metadata=metadata)


def offsets_to_rd(offsets: Mapping[TopicPartition, Committed]) -> list[Any]:
    return [to_rd(tp, c.offset, c.metadata) for tp, c in offsets.items()]


def ours(partitions: Iterable[Any]) -> set[TopicPartition]:
    return {TopicPartition(p.topic, p.partition) for p in partitions}


def consume_arrived(consumer: Consumer, max_records: int, timeout_seconds: float) -> list[Message]:
    """Up to max_records messages, returned as soon as any are there. librdkafka's consume()
    waits out its whole timeout unless the batch fills, which at a low rate turns every poll
    timeout into latency; the timeout here bounds only the wait for the first message."""
    messages: list[Message] = consumer.consume(max_records, 0)
    if messages:
        return messages
    first = consumer.poll(timeout_seconds)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]


def records_of(messages: Sequence[Message]) -> dict[TopicPartition, list[Record]]:
    """Messages by partition, in offset order, as our records. A message that carries an
    error instead of a record raises it."""
    batches: dict[TopicPartition, list[Record]] = {}
    for message in messages:
        error = message.error()
        if error is not None:
            raise client_error(KafkaException(error))
        topic, partition = message.topic(), message.partition()
        record = Record(
            topic,
            partition,
            message.offset(),
            message.timestamp()[1],
            message.key(),
            message.value(),
            message.headers(),
        )
        batch = batches.get(TopicPartition(topic, partition))
        if batch is None:
            batches[TopicPartition(topic, partition)] = [record]
        else:
            batch.append(record)
    return batches
