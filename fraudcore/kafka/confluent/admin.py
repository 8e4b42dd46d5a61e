"""The confluent-kafka adapter's broker side (fraudcore/kafka/ports.py Admin and Probe): topics,
their ACLs, a group's offsets, on librdkafka's admin client."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
)
from confluent_kafka.admin import AdminClient, NewTopic

from fraudcore.config import CommonSettings
from fraudcore.core.topics import TopicSpec
from fraudcore.errors import ClientError
from fraudcore.kafka.access import check_operations, refused_create, refused_topic
from fraudcore.kafka.confluent.common import client_config, mapped, to_rd
from fraudcore.kafka.confluent.errors import client_error, kafka_error
from fraudcore.kafka.types import TopicPartition

log = logging.getLogger(__name__)

_REFUSED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
# How often a wait for the cluster's metadata to catch up (leaders, a new topic) asks again.
METADATA_POLL_SECONDS = 0.1


def _result(future: Any, seconds: float) -> Any:
    """A future's result, its error as the project's."""
    try:
        return future.result(timeout=seconds)
    except KafkaException as exc:
        raise client_error(exc) from exc


class Admin:
    """fraudcore.kafka.ports.Admin on a librdkafka admin client."""

    def __init__(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> None:
        self._seconds = timeout_ms / 1000
        self._who = settings.principal
        self.client = mapped(lambda: AdminClient(client_config(settings, client_id)))

    def describe_cluster(self) -> int:
        # Only the live brokers: a cluster with one node down still counts more than one.
        found = _result(self.client.describe_cluster(request_timeout=self._seconds), self._seconds)
        return len(found.nodes)

    def _topics(self) -> dict[str, Any]:
        found = mapped(lambda: self.client.list_topics(timeout=self._seconds))
        return dict(found.topics)

    def ensure_topics(self, topics: list[TopicSpec]) -> None:
        """Create the missing topics (the broker's default replication factor), wait until each
        partition has a leader, then check the ACLs each TopicSpec needs."""
        existing = self._topics()  # only the topics we may DESCRIBE
        missing = [
            NewTopic(spec.name, spec.partitions, config=dict(spec.configs))
            for spec in topics
            if spec.name not in existing
        ]
        if missing:
            created = self.client.create_topics(missing, operation_timeout=self._seconds)
            for name, future in created.items():
                try:
                    future.result(timeout=self._seconds)
                    log.info("created topic %s", name)
                except KafkaException as exc:
                    error = kafka_error(exc)
                    code = None if error is None else error.code()
                    if code in _REFUSED:
                        raise refused_create(name, self._who) from None
                    if code != KafkaError.TOPIC_ALREADY_EXISTS:  # another client may create it
                        raise client_error(exc) from exc
            self._wait_for_leaders([spec.name for spec in topics])
        self._check_access(topics)

    def _wait_for_leaders(self, names: list[str]) -> None:
        deadline = time.monotonic() + self._seconds
        while True:
            found = self._topics()
            ready = all(
                name in found
                and found[name].error is None
                and found[name].partitions
                and all(p.leader >= 0 for p in found[name].partitions.values())
                for name in names
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise ClientError(f"topics {names} have no leader for every partition yet")
            time.sleep(METADATA_POLL_SECONDS)

    def _check_access(self, topics: list[TopicSpec]) -> None:
        """Each topic's authorized operations. On a cluster a topic just created (by us or by
        another service) reaches each broker's metadata a moment apart: a broker that does not
        know it yet is asked again, until the timeout."""
        wanted = {spec.name: spec.access for spec in topics if spec.access}
        deadline = time.monotonic() + self._seconds
        while wanted:
            described = self.client.describe_topics(
                TopicCollection(list(wanted)),
                include_authorized_operations=True,
                request_timeout=self._seconds,
            )
            for name, future in described.items():
                try:
                    description = future.result(timeout=self._seconds)
                except KafkaException as exc:
                    error = kafka_error(exc)
                    code = None if error is None else error.code()
                    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                        raise refused_topic(name, self._who, wanted[name]) from None
                    if code == KafkaError.UNKNOWN_TOPIC_OR_PART and time.monotonic() < deadline:
                        continue
                    raise client_error(exc) from exc
                needed = wanted.pop(name)
                allowed = {op.name for op in description.authorized_operations or []}
                check_operations(name, self._who, needed, allowed)
            if wanted:
                time.sleep(METADATA_POLL_SECONDS)

    def committed_offsets(
        self, group: str, tps: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        request = ConsumerGroupTopicPartitions(group, [to_rd(tp) for tp in tps])
        futures = mapped(
            lambda: self.client.list_consumer_group_offsets(
                [request], request_timeout=self._seconds
            )
        )
        found = _result(futures[group], self._seconds)
        return {
            TopicPartition(p.topic, p.partition): p.offset if p.offset >= 0 else None
            for p in found.topic_partitions
        }

    def close(self) -> None:
        """librdkafka's admin client has no close: it goes with its last reference."""

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(settings: CommonSettings, client_id: str, seconds: float) -> Admin:
    """An admin client the broker has answered within `seconds` (fraudcore/kafka/waiting.py)."""
    admin = Admin(settings, client_id, int(seconds * 1000))
    admin.describe_cluster()
    return admin


class Probe:
    """Asks the broker for its cluster description through an admin client of its own."""

    def __init__(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> None:
        self._settings, self._client_id, self._timeout_ms = settings, client_id, timeout_ms
        self._admin: Admin | None = None

    def __call__(self) -> None:
        if self._admin is None:
            self._admin = Admin(self._settings, self._client_id, self._timeout_ms)
        self._admin.describe_cluster()

    def close(self) -> None:
        self._admin = None
