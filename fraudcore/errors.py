"""The project's own errors. The Kafka port (fraudcore/kafka/) raises these, never the
client library's, and each says whether a retry can cure it. fraudcore/error_policy.py decides
what the detector does about each.
"""

from __future__ import annotations


class BrokerUnavailableError(RuntimeError):
    """The broker cannot be used. Retriable (start again later), unless a KafkaSecurityError."""


class KafkaSecurityError(BrokerUnavailableError):
    """The broker refused this client for good: wrong credentials, an untrusted certificate, a
    security protocol that does not match the listener, or a missing ACL. Not retriable: the
    configuration must change. The message is one line and never holds a secret."""


class ClientError(Exception):
    """A Kafka client call failed. `retriable`: the same call may succeed later as it is."""

    retriable = False

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause  # the client library's own error, for logs


class RetriableClientError(ClientError):
    """A connection dropped, a request timed out, a coordinator moved: try again."""

    retriable = True


class FencedError(ClientError):
    """Another producer took this transactional id over, or the broker aborted the transaction
    on timeout (both bump the producer epoch). The producer cannot be used again."""


class NotAllowedError(ClientError):
    """The setup is wrong: a missing ACL, an unsupported broker, a bad client option."""


class AssignmentMismatchError(NotAllowedError):
    """The consumer group refused this member: no partition assignment strategy that this
    member offers is one that every other member offers too. kafka-python offers only eager
    assignment, so a confluent member offering only cooperative cannot join its group."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            "the consumer group refused this member: its members share no partition assignment "
            "strategy. kafka-python detectors assign eagerly only: while any share the group, "
            "run every confluent detector with KAFKA_ASSIGNMENT=eager; give all of a group's "
            "confluent detectors the same KAFKA_ASSIGNMENT",
            cause,
        )


class OutputNotWrittenError(ClientError):
    """An output of the open batch was not written: the batch must not commit."""


class TransactionStalledError(ClientError):
    """A transactional call did not complete within its deadline; its producer is replaced."""


class BufferFullError(RetriableClientError):
    """The producer's buffer stayed full, or a topic's metadata could not be had, for the
    producer's max_block_ms: the broker may be down. `sent`: how many records went out first."""

    def __init__(self, sent: int, cause: BaseException) -> None:
        super().__init__(f"producer buffer full or metadata unavailable: {cause!r}", cause)
        self.sent = sent
