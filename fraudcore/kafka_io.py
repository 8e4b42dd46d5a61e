"""The thin Kafka shell shared by both services: client options, waiting for the broker, topics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError, NoError, TopicAlreadyExistsError, for_code

from fraudcore.config import CommonSettings
from fraudcore.runtime import StopFlag
from kafka import KafkaAdminClient

log = logging.getLogger(__name__)


class BrokerUnavailableError(RuntimeError):
    """The broker did not answer within BROKER_WAIT_SECONDS. Retriable: start again later."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


def client_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """Options every Kafka client of ours gets: where the broker is and who we are."""
    return {"bootstrap_servers": settings.bootstrap_servers, "client_id": client_id}


def wait_for_broker(
    settings: CommonSettings, stop: StopFlag, client_id: str
) -> KafkaAdminClient | None:
    """Return an admin client once the broker answers; None if asked to stop while waiting.

    Bounded by BROKER_WAIT_SECONDS and logged once per attempt, so a missing broker shows up
    as a clear message and an exit instead of a crash loop.
    """
    deadline = time.monotonic() + settings.broker_wait_seconds
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            admin = KafkaAdminClient(**client_options(settings, client_id), request_timeout_ms=5000)
            admin.describe_cluster()
        except KafkaError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailableError(
                    f"no Kafka broker answered at {settings.kafka_broker_url} within "
                    f"{settings.broker_wait_seconds:g}s (last error: {exc!r}); "
                    "check KAFKA_BROKER_URL and that the broker is up"
                ) from None
            log.warning(
                "waiting for Kafka broker at %s (attempt %d, %.0fs left): %s",
                settings.kafka_broker_url,
                attempt,
                left,
                type(exc).__name__,
            )
            stop.wait(min(2.0, left))
        else:
            log.info("connected to Kafka broker at %s", settings.kafka_broker_url)
            return admin
    return None


def ensure_topics(admin: KafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Create the topics that are missing; the broker's default replication factor applies."""
    existing = set(admin.list_topics())
    missing = {
        topic.name: {"num_partitions": topic.partitions, "configs": topic.configs}
        for topic in topics
        if topic.name not in existing
    }
    if not missing:
        return
    result = admin.create_topics(missing, raise_errors=False, wait_for_metadata=True)
    for outcome in result["topics"]:
        error = for_code(outcome["error_code"])
        if error is NoError:
            log.info("created topic %s", outcome["name"])
        elif error is not TopicAlreadyExistsError:  # another client may create it at the same time
            raise error(f"cannot create topic {outcome['name']}: {outcome.get('error_message')}")
