"""The confluent consumer on either group protocol: librdkafka refuses the classic settings
(session.timeout.ms, heartbeat.interval.ms, partition.assignment.strategy) with the consumer
protocol, so the adapter must leave them out there and keep them on classic. No broker needed:
librdkafka checks its configuration when the consumer is made."""

from __future__ import annotations

import pytest

from fraudcore.config import CommonSettings
from fraudcore.kafka.confluent import ConfluentDriver, group_config
from fraudcore.kafka.ports import GroupConsumerConfig

# Nothing listens there: the consumer is made and closed without ever joining.
NOWHERE = "127.0.0.1:1"


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_the_confluent_consumer_is_made_on_either_group_protocol(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """On consumer, the session timeout goes to the group first (no broker here to take it)."""
    applied: list[tuple[str, int]] = []

    def apply(_settings: CommonSettings, _client_id: str, group: str, timeout_ms: int) -> bool:
        applied.append((group, timeout_ms))
        return True

    monkeypatch.setattr(group_config, "apply_session_timeout", apply)
    settings = CommonSettings(
        kafka_broker_url=NOWHERE, kafka_client="confluent", kafka_group_protocol=protocol
    )
    config = GroupConsumerConfig("g", session_timeout_ms=6000, max_poll_records=10)
    consumer = ConfluentDriver().consumer(settings, "unit", config)
    consumer.close()
    assert applied == ([("g", 6000)] if protocol == "consumer" else [])


@pytest.mark.parametrize(
    ("session_timeout_ms", "heartbeat_ms"), [(6000, "2000"), (10_000, "3333"), (45_000, "5000")]
)
def test_the_group_gets_the_session_timeout_and_a_heartbeat_a_third_of_it(
    session_timeout_ms: int, heartbeat_ms: str
) -> None:
    """As on classic, but never above the broker's default 5 s, which Kafka's default session
    timeout (45 s) already has: a default detector alters nothing."""
    assert group_config.wanted(session_timeout_ms) == {
        "consumer.session.timeout.ms": str(session_timeout_ms),
        "consumer.heartbeat.interval.ms": heartbeat_ms,
    }
