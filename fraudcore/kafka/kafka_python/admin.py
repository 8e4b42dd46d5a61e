"""The kafka-python adapter's broker side (fraudcore/kafka/ports.py Admin and Probe): wait for the
broker, create and check the topics and their ACLs, read a group's offsets. Start-up work of the
services, on an admin client.
"""

from __future__ import annotations

import logging
import time
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
from fraudcore.errors import BrokerUnavailableError, ClientError, KafkaSecurityError
from fraudcore.kafka.kafka_python.clients import client_options, mapped, to_kafka
from fraudcore.kafka.kafka_python.errors import client_error
from fraudcore.kafka.kafka_python.login import check_login, fail_if_broker_expects_tls
from fraudcore.kafka.types import TopicPartition
from fraudcore.runtime import StopFlag
from kafka import KafkaAdminClient

log = logging.getLogger(__name__)

# Longest single connection attempt while waiting for the broker (bounded by what is left).
ATTEMPT_SECONDS = 10.0


class Admin:
    """fraudcore.kafka.ports.Admin on a KafkaAdminClient."""

    def __init__(self, settings: CommonSettings, client_id: str, **options: object) -> None:
        self.client = mapped(
            lambda: KafkaAdminClient(**client_options(settings, client_id), **options)
        )

    def describe_cluster(self) -> None:
        mapped(self.client.describe_cluster)

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


def wait_for_broker(settings: CommonSettings, stop: StopFlag, client_id: str) -> Admin | None:
    """Return an admin client once the broker answers; None if asked to stop while waiting.

    Bounded by BROKER_WAIT_SECONDS and logged once per attempt, so a missing broker shows up
    as a clear message and an exit instead of a crash loop. A refusal (wrong credentials,
    untrusted certificate, protocol mismatch) raises KafkaSecurityError at once, never retried.
    """
    deadline = time.monotonic() + settings.broker_wait_seconds
    secured = settings.kafka_security_protocol != "PLAINTEXT"
    attempt = 0
    while not stop.is_set():
        attempt += 1
        budget = max(1.0, min(ATTEMPT_SECONDS, deadline - time.monotonic()))
        admin: Admin | None = None
        try:
            if secured:
                check_login(settings, client_id, timeout=budget)
            admin = Admin(
                settings,
                client_id,
                request_timeout_ms=5000,
                bootstrap_timeout_ms=int(budget * 1000),
            )
            admin.describe_cluster()
        except (ClientError, OSError) as error:
            exc = error.cause if isinstance(error, ClientError) and error.cause else error
            if admin is not None:
                admin.close()
            if not secured:
                fail_if_broker_expects_tls(settings, budget)
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
                who = _admin_principal(admin)
                raise KafkaSecurityError(
                    f"topic {name} is missing (or {who} may not see it) and {who} is not "
                    f"authorized to create it: have an admin create it and grant the ACLs"
                )
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
            verbs = " and ".join(op.lower() for op in needed)
            raise KafkaSecurityError(f"{who} is not authorized to {verbs} topic {name}")
        allowed = topic.get("authorized_operations") or []
        if not allowed:
            continue  # the broker did not say; the first real request will tell
        lacking = [op for op in needed if op not in allowed and "ALL" not in allowed]
        if lacking:
            verbs = " and ".join(op.lower() for op in lacking)
            raise KafkaSecurityError(
                f"{who} is not authorized to {verbs} topic {name} "
                f"(allowed: {', '.join(sorted(op.lower() for op in allowed))})"
            )


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
