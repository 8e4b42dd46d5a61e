"""kafka-python's errors as the project's own (fraudcore/errors.py), and refusals as one line."""

from __future__ import annotations

from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InconsistentGroupProtocolError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedVersionError,
)

from fraudcore.config import CommonSettings
from fraudcore.errors import (
    AssignmentMismatchError,
    ClientError,
    FencedError,
    KafkaSecurityError,
    NotAllowedError,
    RetriableClientError,
)

# No retry can cure these: the setup is wrong.
_NOT_ALLOWED = (AuthorizationError, UnsupportedVersionError, KafkaConfigurationError)
# What a producer sees once another one took its transactional id over, or once the broker
# aborted its transaction on timeout (which bumps the epoch too).
_FENCED = (ProducerFencedError, InvalidProducerEpochError)


def client_error(cause: BaseException) -> ClientError:
    """The project's error for one kafka-python raised (or handed to a callback)."""
    if isinstance(cause, ClientError):
        return cause
    if isinstance(cause, InconsistentGroupProtocolError):
        return AssignmentMismatchError(cause)
    kind: type[ClientError]
    if isinstance(cause, _NOT_ALLOWED):
        kind = NotAllowedError
    elif isinstance(cause, _FENCED):
        kind = FencedError
    elif isinstance(cause, KafkaError) and cause.retriable:
        kind = RetriableClientError
    else:
        kind = ClientError
    return kind(repr(cause), cause)


def describe_refusal(exc: KafkaSecurityError | ClientError, settings: CommonSettings) -> str:
    """One line for a refusal: a KafkaSecurityError's own, or one for an ACL refusal that
    kafka-python raised (consumer group, transactional id, topic)."""
    cause = exc.cause if isinstance(exc, ClientError) else None
    if not isinstance(cause, AuthorizationError):
        return str(exc)
    who = settings.principal
    detail = " ".join(str(arg) for arg in cause.args if str(arg)).strip()
    if not detail:  # kafka-python often names nothing; the detector's settings do
        if isinstance(cause, TransactionalIdAuthorizationFailedError):
            detail = repr(getattr(settings, "effective_transactional_id", ""))
        elif isinstance(cause, GroupAuthorizationFailedError):
            detail = repr(getattr(settings, "consumer_group", ""))
    kinds: list[tuple[type[AuthorizationError], str]] = [
        (TopicAuthorizationFailedError, "use topic"),
        (GroupAuthorizationFailedError, "use consumer group"),
        (TransactionalIdAuthorizationFailedError, "use transactional id"),
        (ClusterAuthorizationFailedError, "act on the cluster"),
    ]
    for kind, verb in kinds:
        if isinstance(cause, kind):
            return f"{who} is not authorized to {verb}" + (f" {detail}" if detail else "")
    return f"{who} is not authorized: {type(cause).__name__}" + (f": {detail}" if detail else "")
