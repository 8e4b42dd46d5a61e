"""How librdkafka's errors reach the port as the project's own (confluent adapter), on real
confluent-kafka error objects; no broker."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from fraudcore.errors import (
    AssignmentMismatchError,
    ClientError,
    FencedError,
    NotAllowedError,
    RetriableClientError,
)
from fraudcore.kafka.confluent.errors import client_error
from fraudcore.kafka.confluent.reader import without_group_refusals


@pytest.mark.parametrize(
    ("code", "ours"),
    [
        (KafkaError.PRODUCER_FENCED, FencedError),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, NotAllowedError),
        (KafkaError._TRANSPORT, RetriableClientError),
        (KafkaError.INCONSISTENT_GROUP_PROTOCOL, AssignmentMismatchError),
    ],
)
def test_client_errors_are_mapped_to_ours(code: int, ours: type[ClientError]) -> None:
    raised = KafkaException(KafkaError(code))
    mapped = client_error(raised)
    assert type(mapped) is ours
    assert mapped.cause is raised


def test_a_group_refusing_the_assignment_says_what_to_set() -> None:
    """The same line whichever client was refused: it names the setting that fixes it."""
    mapped = client_error(KafkaException(KafkaError(KafkaError.INCONSISTENT_GROUP_PROTOCOL)))
    assert isinstance(mapped, NotAllowedError)  # no retry cures it: the detector stops
    assert "KAFKA_ASSIGNMENT=eager" in str(mapped)


class _Reported:
    """A consumed message that carries only an error, as librdkafka reports one."""

    def __init__(self, code: int) -> None:
        self._error = KafkaError(code)

    def error(self) -> KafkaError:
        return self._error


def test_the_reader_ignores_refusals_of_its_unjoined_group_but_no_other_error() -> None:
    refused = _Reported(KafkaError.GROUP_AUTHORIZATION_FAILED)
    other = _Reported(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert without_group_refusals([refused, other]) == [other]
