"""The kafka-python adapter's broker side (fraudcore/kafka/ports.py Admin and Probe): wait for the
broker, create and check the topics and their ACLs, read a group's offsets. Start-up work of the
services, on an admin client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    NoError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from fraudcore.config import CommonSettings
from fraudcore.core.topics import TopicSpec
from fraudcore.kafka.access import check_operations, refused_create, refused_topic
from fraudcore.kafka.kafka_python.clients import client_options, mapped, to_kafka
from fraudcore.kafka.kafka_python.errors import client_error
from fraudcore.kafka.types import TopicPartition
from kafka import KafkaAdminClient

log = logging.getLogger(__name__)


class Admin:
    """fraudcore.kafka.ports.Admin on a KafkaAdminClient."""

    def __init__(self, settings: CommonSettings, client_id: str, **options: object) -> None:
        self.client = mapped(
            lambda: KafkaAdminClient(**client_options(settings, client_id), **options)
        )

    def describe_cluster(self) -> int:
        # Fenced (dead) brokers are listed too: they belong to the cluster.
        return len(mapped(self.client.describe_cluster)["brokers"])

    def ensure_topics(self, topics: list[TopicSpec]) -> None:
        try:
            ensure_topics(self.client, topics)
        except KafkaError as exc:
            raise client_error(exc) from exc

    def committed_offsets(
        self, group: str, tps: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        wanted = {group: [to_kafka(tp) for tp in tps]}
        found = mapped(lambda: self.client.list_group_offsets(wanted).get(group, {}))
        return {
            TopicPartition(tp.topic, tp.partition): meta.offset if meta.offset >= 0 else None
            for tp, meta in found.items()
        }

    def close(self) -> None:
        self.client.close()

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
    admin = Admin(
        settings, client_id, request_timeout_ms=5000, bootstrap_timeout_ms=int(seconds * 1000)
    )
    try:
        admin.describe_cluster()
    except BaseException:
        admin.close()
        raise
    return admin


def _admin_principal(admin: KafkaAdminClient) -> str:
    user = admin.config.get("sasl_plain_username")
    return f"user {user!r}" if user else "this client"


def ensure_topics(admin: KafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Create the topics that are missing, then check that we may use them as TopicSpec.access says.

    The broker's default replication factor applies. Where the admin creates the topics (secure
    mode), a service without CREATE only reads the topic list. Raises KafkaSecurityError when a
    missing topic may not be created or a needed ACL is missing.
    """
    existing = set(admin.list_topics())  # only the topics we may DESCRIBE
    missing = {
        topic.name: {"num_partitions": topic.partitions, "configs": topic.configs}
        for topic in topics
        if topic.name not in existing
    }
    if missing:
        # Errors are read per topic first: an unauthorized create must not end up as a
        # timeout waiting for a topic that will never appear.
        result = admin.create_topics(missing, raise_errors=False)
        ready = []
        for outcome in result["topics"]:
            error = for_code(outcome["error_code"])
            name = outcome["name"]
            if error is NoError:
                log.info("created topic %s", name)
            elif error in (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
                raise refused_create(name, _admin_principal(admin))
            elif error is not TopicAlreadyExistsError:  # another client may create it meanwhile
                raise error(f"cannot create topic {name}: {outcome.get('error_message')}")
            ready.append(name)
        admin.wait_for_topics(ready)  # visible, with a leader for every partition
    check_topic_access(admin, topics)


def check_topic_access(admin: KafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Fail now, with the operation and the topic, when an ACL the service needs is missing.

    Uses the operations the broker says we are authorized for (Metadata's
    topic_authorized_operations); without an authorizer the broker allows every operation.
    """
    wanted = {topic.name: topic.access for topic in topics if topic.access}
    if not wanted:
        return
    who = _admin_principal(admin)
    for topic in admin.describe_topics(list(wanted)):
        name = topic["name"]
        needed = wanted.get(name, ())
        if for_code(topic["error_code"]) is TopicAuthorizationFailedError:
            raise refused_topic(name, who, needed)
        check_operations(name, who, needed, topic.get("authorized_operations") or [])


class Probe:
    """Asks the broker for its cluster metadata through an admin client of its own.

    The client is built on first use (and again after it could not be built), so a broker that
    is down at start-up is simply reported unreachable until it answers.
    """

    def __init__(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> None:
        self._settings, self._client_id, self._timeout_ms = settings, client_id, timeout_ms
        self._admin: Admin | None = None

    def __call__(self) -> None:
        if self._admin is None:
            timeout = self._timeout_ms
            self._admin = Admin(
                self._settings,
                self._client_id,
                request_timeout_ms=timeout,
                bootstrap_timeout_ms=timeout,
            )
        self._admin.describe_cluster()

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
