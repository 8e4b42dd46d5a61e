"""The broker side of the Kafka port: wait for the broker, create and check the topics and their
ACLs, and turn a refusal into one line. Startup work of both services, on an admin client.
"""

from __future__ import annotations

import logging
import time

from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    NoError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    for_code,
)

from fraudcore.config import CommonSettings
from fraudcore.core.topics import TopicSpec
from fraudcore.errors import BrokerUnavailableError, ClientError, KafkaSecurityError
from fraudcore.kafka_port import client_options, principal
from fraudcore.kafka_workarounds import check_login, fail_if_broker_expects_tls
from fraudcore.runtime import StopFlag
from kafka import KafkaAdminClient

log = logging.getLogger(__name__)

# What the services' start-up hands on: an admin client connected to the broker.
AdminClient = KafkaAdminClient

# Longest single connection attempt while waiting for the broker (bounded by what is left).
ATTEMPT_SECONDS = 10.0


def wait_for_broker(
    settings: CommonSettings, stop: StopFlag, client_id: str
) -> KafkaAdminClient | None:
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
        admin: KafkaAdminClient | None = None
        try:
            if secured:
                check_login(settings, client_id, timeout=budget)
            admin = KafkaAdminClient(
                **client_options(settings, client_id),
                request_timeout_ms=5000,
                bootstrap_timeout_ms=int(budget * 1000),
            )
            admin.describe_cluster()
        except (KafkaError, OSError) as exc:
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


def describe_refusal(exc: KafkaSecurityError | ClientError, settings: CommonSettings) -> str:
    """One line for a refusal: a KafkaSecurityError's own, or one for an ACL refusal that
    kafka-python raised (consumer group, transactional id, topic)."""
    cause = exc.cause if isinstance(exc, ClientError) else None
    if not isinstance(cause, AuthorizationError):
        return str(exc)
    return _describe_authorization(cause, settings)


def _describe_authorization(exc: AuthorizationError, settings: CommonSettings) -> str:
    who = principal(settings)
    detail = " ".join(str(arg) for arg in exc.args if str(arg)).strip()
    if not detail:  # kafka-python often names nothing; the detector's settings do
        if isinstance(exc, TransactionalIdAuthorizationFailedError):
            detail = repr(getattr(settings, "effective_transactional_id", ""))
        elif isinstance(exc, GroupAuthorizationFailedError):
            detail = repr(getattr(settings, "consumer_group", ""))
    kinds: list[tuple[type[AuthorizationError], str]] = [
        (TopicAuthorizationFailedError, "use topic"),
        (GroupAuthorizationFailedError, "use consumer group"),
        (TransactionalIdAuthorizationFailedError, "use transactional id"),
        (ClusterAuthorizationFailedError, "act on the cluster"),
    ]
    for kind, verb in kinds:
        if isinstance(exc, kind):
            return f"{who} is not authorized to {verb}" + (f" {detail}" if detail else "")
    return f"{who} is not authorized: {type(exc).__name__}" + (f": {detail}" if detail else "")


class KafkaProbe:
    """Asks the broker for its cluster metadata through an admin client of its own.

    The client is built on first use (and again after it could not be built), so a broker that
    is down at start-up is simply reported unreachable until it answers.
    """

    def __init__(self, settings: CommonSettings, client_id: str, timeout_ms: int) -> None:
        self._options = {
            **client_options(settings, client_id),
            "request_timeout_ms": timeout_ms,
            "bootstrap_timeout_ms": timeout_ms,
        }
        self._admin: KafkaAdminClient | None = None

    def __call__(self) -> None:
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._options)
        self._admin.describe_cluster()

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
