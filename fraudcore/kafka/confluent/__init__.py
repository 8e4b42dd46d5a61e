"""The confluent-kafka adapter: the Kafka port (fraudcore/kafka/ports.py) on confluent-kafka,
whose wheels bundle librdkafka. Chosen with KAFKA_CLIENT=confluent.

Its consumer group uses cooperative (incremental) assignment unless KAFKA_ASSIGNMENT=eager,
which a group mixing it with kafka-python detectors needs while one client rolls to the other.
KAFKA_GROUP_PROTOCOL=consumer joins with KIP-848's protocol instead: the broker assigns.
"""

from __future__ import annotations

from fraudcore.config import CommonSettings
from fraudcore.errors import ClientError, KafkaSecurityError
from fraudcore.kafka import waiting
from fraudcore.kafka.confluent import clients, errors, group_config
from fraudcore.kafka.confluent.admin import Admin, Probe, connect
from fraudcore.kafka.confluent.reader import Reader
from fraudcore.kafka.ports import GroupConsumerConfig, ProducerConfig
from fraudcore.runtime import StopFlag

ASSIGNMENT_STRATEGIES = {"cooperative": "cooperative-sticky", "eager": "range"}


class ConfluentDriver:
    """fraudcore.kafka.ports.Driver for confluent-kafka."""

    name: str = "confluent"
    loggers: tuple[str, ...] = ("confluent_kafka",)

    def io_thread_name(self, client_id: str) -> str:
        """librdkafka's threads are its own, not Python's: its log lines reach Python on the
        thread that polls (the probe's own), so there is no I/O thread to name."""
        return f"rdkafka-{client_id}"

    def consumer(
        self, settings: CommonSettings, client_id: str, config: GroupConsumerConfig
    ) -> clients.Consumer:
        if settings.kafka_group_protocol == "consumer":
            # The broker owns the session timeout there: given to the group before joining.
            group_config.apply_session_timeout(
                settings, client_id, config.group_id, config.session_timeout_ms
            )
        strategy = ASSIGNMENT_STRATEGIES[settings.kafka_assignment]
        return clients.new_consumer(settings, client_id, config, strategy)

    def producer(
        self, settings: CommonSettings, client_id: str, config: ProducerConfig
    ) -> clients.Producer:
        return clients.new_producer(settings, client_id, config)

    def reader(
        self,
        settings: CommonSettings,
        client_id: str,
        *,
        from_latest: bool = False,
        request_timeout_ms: int | None = None,
    ) -> Reader:
        return Reader(
            settings, client_id, from_latest=from_latest, request_timeout_ms=request_timeout_ms
        )

    def wait_for_broker(
        self, settings: CommonSettings, stop: StopFlag, client_id: str
    ) -> Admin | None:
        return waiting.wait_for_broker(
            settings, stop, client_id, lambda seconds: connect(settings, client_id, seconds)
        )

    def admin(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> Admin:
        return Admin(settings, client_id, timeout_ms)

    def probe(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> Probe:
        return Probe(settings, client_id, timeout_ms)

    def describe_refusal(
        self, exc: KafkaSecurityError | ClientError, settings: CommonSettings
    ) -> str:
        return errors.describe_refusal(exc, settings)
