"""The kafka-python adapter: the Kafka port (fraudcore/kafka/ports.py) on kafka-python 3.0.12.

The only package of the services that imports kafka-python. What it needs of the library's
internals is quarantined in workarounds.py, sender_guard.py and login.py, each piece tested
against the real library (tests/unit/test_kafka_workarounds.py).
"""

from __future__ import annotations

from fraudcore.config import CommonSettings
from fraudcore.errors import ClientError, KafkaSecurityError
from fraudcore.kafka import waiting
from fraudcore.kafka.kafka_python import clients, errors, workarounds
from fraudcore.kafka.kafka_python.admin import Admin, Probe, connect
from fraudcore.kafka.kafka_python.reader import Reader
from fraudcore.kafka.ports import GroupConsumerConfig, ProducerConfig
from fraudcore.runtime import StopFlag


class KafkaPythonDriver:
    """fraudcore.kafka.ports.Driver for kafka-python."""

    name: str = "kafka-python"
    loggers: tuple[str, ...] = ("kafka",)

    def __init__(self) -> None:
        workarounds.quiet_reads_after_abort()

    def io_thread_name(self, client_id: str) -> str:
        return workarounds.client_io_thread_name(client_id)

    def consumer(
        self, settings: CommonSettings, client_id: str, config: GroupConsumerConfig
    ) -> clients.Consumer:
        return clients.new_consumer(settings, client_id, config)

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
        return Admin(settings, client_id, request_timeout_ms=timeout_ms)

    def probe(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> Probe:
        return Probe(settings, client_id, timeout_ms)

    def describe_refusal(
        self, exc: KafkaSecurityError | ClientError, settings: CommonSettings
    ) -> str:
        return errors.describe_refusal(exc, settings)
