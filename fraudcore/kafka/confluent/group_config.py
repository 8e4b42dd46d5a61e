"""SESSION_TIMEOUT_MS on the consumer group protocol (KIP-848).

There the broker, not the member, owns the session timeout and the heartbeat interval: they
are the group's configs consumer.session.timeout.ms and consumer.heartbeat.interval.ms, within
the broker's group.consumer.min/max.* bounds (a 45 s floor by default; kafka/broker.sh and the
compose broker lower it to classic's 6 s). So that SESSION_TIMEOUT_MS means on this protocol
what it means on classic, the consumer sets them on its group before it joins. Where the broker
refuses (a value outside its bounds, or no right to describe or alter the group's configs), the
broker's values stay, and one warning says so: the detector still works, only a crashed
member's partitions wait longer.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from fraudcore.config import CommonSettings
from fraudcore.kafka.confluent.common import client_config, mapped

log = logging.getLogger(__name__)

SECONDS = 10.0
SESSION = "consumer.session.timeout.ms"
HEARTBEAT = "consumer.heartbeat.interval.ms"
# The broker's default heartbeat interval, and its floor unless lowered.
BROKER_HEARTBEAT_MS = 5000


def wanted(session_timeout_ms: int) -> dict[str, str]:
    """The group configs for `session_timeout_ms`: a heartbeat a third of it, as on classic, but
    no shorter a wait than the broker's default needs (45 s gives its own 5 s: nothing to set)."""
    heartbeat = min(BROKER_HEARTBEAT_MS, session_timeout_ms // 3)
    return {SESSION: str(session_timeout_ms), HEARTBEAT: str(heartbeat)}


def _one(futures: dict[Any, Any]) -> Any:
    (future,) = futures.values()
    return future.result(timeout=SECONDS)


def _reason(exc: BaseException) -> str:
    """librdkafka's own words for a refusal (e.g. the broker's floor), else the exception's."""
    describe = getattr(exc.args[0], "str", None) if exc.args else None
    return str(describe()) if callable(describe) else (str(exc) or type(exc).__name__)


def apply_session_timeout(
    settings: CommonSettings, client_id: str, group: str, session_timeout_ms: int
) -> bool:
    """Give `group` this session timeout unless it has it; whether the group now has it."""
    configs = wanted(session_timeout_ms)
    admin = mapped(lambda: AdminClient(client_config(settings, f"{client_id}-group-config")))
    try:
        current = _one(admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]))
        if all(current[name].value == value for name, value in configs.items() if name in current):
            return True
        entries = [
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
            for name, value in configs.items()
        ]
        change = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
        _one(admin.incremental_alter_configs([change]))
    except (KafkaException, TimeoutError) as exc:
        log.warning(
            "SESSION_TIMEOUT_MS=%d could not be set on group %s (KAFKA_GROUP_PROTOCOL=consumer): "
            "the broker's session timeout applies (group.consumer.session.timeout.ms): %s",
            session_timeout_ms,
            group,
            _reason(exc),
        )
        return False
    log.info(
        "group %s: %s=%s, %s=%s", group, SESSION, configs[SESSION], HEARTBEAT, configs[HEARTBEAT]
    )
    return True
