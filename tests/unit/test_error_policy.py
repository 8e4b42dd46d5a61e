"""The error policy, row by row (fraudcore/error_policy.py), and the client errors it sees
(fraudcore/kafka_port.client_error maps kafka-python's errors onto the project's)."""

from __future__ import annotations

import pytest
from kafka.errors import (
    CommitFailedError,
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedVersionError,
)

from fraudcore.error_policy import POLICY, Action, decide
from fraudcore.errors import (
    ClientError,
    FencedError,
    NotAllowedError,
    OutputNotWrittenError,
    RetriableClientError,
    TransactionStalledError,
)
from fraudcore.kafka_port import client_error

ROWS = [
    # (error, young?, action)
    (NotAllowedError("no ACL"), True, Action.STOP),
    (NotAllowedError("no ACL"), False, Action.STOP),
    (FencedError("twin"), True, Action.STOP),
    (FencedError("timed out"), False, Action.REPLACE),
    (TransactionStalledError("stuck"), True, Action.REPLACE),
    (TransactionStalledError("stuck"), False, Action.REPLACE),
    (OutputNotWrittenError("1 output"), True, Action.ABORT),
    (OutputNotWrittenError("1 output"), False, Action.ABORT),
    (RetriableClientError("timeout"), True, Action.ABORT),
    (ClientError("anything else"), False, Action.ABORT),
]


@pytest.mark.parametrize(("error", "young", "action"), ROWS)
def test_each_row(error: ClientError, young: bool, action: Action) -> None:
    assert decide(error, young=young) is action


def test_every_row_of_the_table_is_exercised() -> None:
    kinds = {type(error) for error, _, _ in ROWS}
    assert {kind for kind, _, _ in POLICY} <= kinds | {ClientError}


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
    ],
)
def test_client_errors_are_mapped_to_ours(raised: Exception, ours: type[ClientError]) -> None:
    mapped = client_error(raised)
    assert type(mapped) is ours
    assert mapped.cause is raised
    assert mapped.retriable == (ours is RetriableClientError)
