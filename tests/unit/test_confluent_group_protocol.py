"""The confluent consumer on either group protocol: librdkafka refuses the classic settings
(session.timeout.ms, heartbeat.interval.ms, partition.assignment.strategy) with the consumer
protocol, so the adapter must leave them out there and keep them on classic. No broker needed:
librdkafka checks its configuration when the consumer is made."""

from __future__ import annotations

import pytest

from fraudcore.config import CommonSettings
from fraudcore.kafka.confluent import ConfluentDriver
from fraudcore.kafka.ports import GroupConsumerConfig

# Nothing listens there: the consumer is made and closed without ever joining.
NOWHERE = "127.0.0.1:1"


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_the_confluent_consumer_is_made_on_either_group_protocol(protocol: str) -> None:
    settings = CommonSettings(
        kafka_broker_url=NOWHERE, kafka_client="confluent", kafka_group_protocol=protocol
    )
    config = GroupConsumerConfig("g", session_timeout_ms=6000, max_poll_records=10)
    consumer = ConfluentDriver().consumer(settings, "unit", config)
    consumer.close()
