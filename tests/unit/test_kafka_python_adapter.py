"""The kafka-python adapter's own cases, on real kafka-python 3.0.12 objects (no broker: the
bootstrap address is closed): how the library's errors reach the port as the project's, and
the deadline around its transactional calls. The port's contract on a broker is
tests/integration/test_port_contract.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka.errors import (
    CommitFailedError,
    InconsistentGroupProtocolError,
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedVersionError,
)

from fraudcore.errors import (
    AssignmentMismatchError,
    ClientError,
    FencedError,
    NotAllowedError,
    RetriableClientError,
)
from fraudcore.kafka.kafka_python.clients import Producer
from fraudcore.kafka.kafka_python.errors import client_error
from fraudcore.kafka.kafka_python.workarounds import discard_producer
from kafka import KafkaProducer


@pytest.fixture
def fenced() -> Iterator[Producer]:
    """The adapter on a real transactional producer that a newer one has fenced."""
    made = KafkaProducer(
        bootstrap_servers="127.0.0.1:1",  # nothing listens there
        transactional_id="adapter-test",
        api_version=(4, 0),
        max_block_ms=200,
    )
    made._transaction_manager.transition_to_fatal_error(ProducerFencedError())
    yield Producer(made)
    discard_producer(made)


def test_a_fenced_producer_refuses_a_transaction_as_fenced(fenced: Producer) -> None:
    """kafka-python refuses with a plain KafkaError that names the fencing only in its text."""
    with pytest.raises(FencedError) as refused:
        fenced.begin_transaction()
    assert isinstance(refused.value.cause, ProducerFencedError)


@pytest.mark.parametrize(
    ("raised", "ours"),
    [
        (ProducerFencedError(), FencedError),
        (InvalidProducerEpochError(), FencedError),
        (TopicAuthorizationFailedError(), NotAllowedError),
        (TransactionalIdAuthorizationFailedError(), NotAllowedError),
        (UnsupportedVersionError(), NotAllowedError),
        (KafkaConnectionError(), RetriableClientError),
        (KafkaTimeoutError(), RetriableClientError),
        (CommitFailedError(), ClientError),
        (InconsistentGroupProtocolError(), AssignmentMismatchError),
    ],
)
def test_client_errors_are_mapped_to_ours(raised: Exception, ours: type[ClientError]) -> None:
    mapped = client_error(raised)
    assert type(mapped) is ours
    assert mapped.cause is raised
    assert mapped.retriable == (ours is RetriableClientError)
