"""confluent-kafka's (librdkafka's) errors as the project's own (fraudcore/errors.py)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from fraudcore.config import CommonSettings
from fraudcore.errors import (
    AssignmentMismatchError,
    ClientError,
    FencedError,
    KafkaSecurityError,
    NotAllowedError,
    RetriableClientError,
)

# Another producer took the transactional id over, or the broker aborted the transaction on
# timeout: both bump the epoch.
_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}
# No retry can cure these: the setup is wrong.
_NOT_ALLOWED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError.UNSUPPORTED_VERSION,
    KafkaError._INVALID_ARG,
}
_VERBS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "use topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "use consumer group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "use transactional id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "act on the cluster",
}


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The librdkafka error inside a KafkaException (or the error itself)."""
    if isinstance(exc, KafkaError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def client_error(cause: BaseException) -> ClientError:
    """The project's error for one confluent-kafka raised or reported."""
    if isinstance(cause, ClientError):
        return cause
    error = kafka_error(cause)
    kind: type[ClientError] = ClientError
    if error is not None:
        code = error.code()
        if code == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
            return AssignmentMismatchError(cause)
        if code in _FENCED:
            kind = FencedError
        elif code in _NOT_ALLOWED:
            kind = NotAllowedError
        elif error.retriable() or code in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT):
            kind = RetriableClientError
    message = f"{error.name()}: {error.str()}" if error is not None else repr(cause)
    return kind(message, cause)


def describe_refusal(exc: KafkaSecurityError | ClientError, settings: CommonSettings) -> str:
    """One line for a refusal, worded as the kafka-python adapter words it."""
    error = kafka_error(exc.cause) if isinstance(exc, ClientError) and exc.cause else None
    if error is None or error.code() not in _VERBS:
        return str(exc)
    who = settings.principal
    detail = ""
    if error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        detail = repr(getattr(settings, "effective_transactional_id", ""))
    elif error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
        # As kafka-python words it: the broker's refusal names the group, unquoted.
        detail = str(getattr(settings, "consumer_group", ""))
    return f"{who} is not authorized to {_VERBS[error.code()]}" + (f" {detail}" if detail else "")
