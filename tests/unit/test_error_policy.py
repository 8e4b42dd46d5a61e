"""The error plan, row by row (fraudcore/error_policy.py): for each error at each step, the whole
plan the detector carries out."""

from __future__ import annotations

import pytest

from fraudcore.error_policy import (
    ABORT,
    MAX_PRODUCER_RESETS_IN_A_ROW,
    POLICY,
    REPLACE,
    RETRY_SECONDS,
    STOP,
    Plan,
    Step,
    plan,
)
from fraudcore.errors import (
    BufferFullError,
    ClientError,
    FencedError,
    NotAllowedError,
    OutputNotWrittenError,
    RetriableClientError,
    TransactionStalledError,
)

POLL_AGAIN = Plan(retry_after=0.5)
TRY_AGAIN = Plan(retry_after=RETRY_SECONDS)

ROWS = [
    # (step, error, young?, plan)
    (Step.BATCH, NotAllowedError("no ACL"), True, STOP),
    (Step.BATCH, NotAllowedError("no ACL"), False, STOP),
    (Step.POLL, NotAllowedError("no group ACL"), True, STOP),
    (Step.RESTORE, NotAllowedError("no read ACL"), True, STOP),
    (Step.NEW_PRODUCER, NotAllowedError("no transactional id ACL"), True, STOP),
    (Step.ABORT, NotAllowedError("no ACL"), True, STOP),
    (Step.BATCH, FencedError("twin"), True, STOP),
    (Step.BATCH, FencedError("timed out"), False, REPLACE),
    (Step.BATCH, TransactionStalledError("stuck"), True, REPLACE),
    (Step.BATCH, TransactionStalledError("stuck"), False, REPLACE),
    (Step.BATCH, OutputNotWrittenError("1 output"), True, ABORT),
    (Step.BATCH, OutputNotWrittenError("1 output"), False, ABORT),
    (Step.BATCH, RetriableClientError("timeout"), True, ABORT),
    (Step.BATCH, BufferFullError(3, TimeoutError()), True, ABORT),
    (Step.BATCH, ClientError("anything else"), False, ABORT),
    (Step.ABORT, ClientError("epoch bumped"), True, REPLACE),
    (Step.ABORT, TransactionStalledError("stuck"), True, REPLACE),
    (Step.POLL, RetriableClientError("connection refused"), True, POLL_AGAIN),
    (Step.POLL, ClientError("commit failed"), True, STOP),
    (Step.NEW_PRODUCER, FencedError("twin"), True, STOP),
    (Step.NEW_PRODUCER, RetriableClientError("broker away"), True, TRY_AGAIN),
    (Step.NEW_PRODUCER, ClientError("init failed"), True, TRY_AGAIN),
    (Step.RESTORE, RetriableClientError("coordinator moved"), True, TRY_AGAIN),
    (Step.RESTORE, ClientError("read failed"), True, TRY_AGAIN),
]


@pytest.mark.parametrize(("step", "error", "young", "expected"), ROWS)
def test_each_row(step: Step, error: ClientError, young: bool, expected: Plan) -> None:
    assert plan(error, step, young=young) == expected


def test_every_row_of_the_table_is_exercised() -> None:
    exercised = {(step, type(error)) for step, error, _, _ in ROWS}
    for row_step, kind, _, _ in POLICY:
        steps = list(Step) if row_step is None else [row_step]
        assert all((step, kind) in exercised for step in steps), (row_step, kind)


def test_every_step_has_a_plan_for_any_client_error() -> None:
    for step in Step:
        assert isinstance(plan(ClientError("x"), step), Plan)


def test_without_a_transaction_nothing_is_replaced() -> None:
    """at_least_once: aborting is flushing, and the input is read again."""
    assert plan(TransactionStalledError("stuck"), Step.BATCH, transactional=False) == Plan(
        rewind=True
    )
    assert plan(ClientError("flush failed"), Step.ABORT, transactional=False) == Plan(rewind=True)
    assert plan(RetriableClientError("x"), Step.BATCH, transactional=False) == ABORT


def test_a_producer_replaced_too_often_in_a_row_is_given_up() -> None:
    stalled = TransactionStalledError("stuck")
    assert plan(stalled, Step.BATCH, replaced_in_a_row=MAX_PRODUCER_RESETS_IN_A_ROW - 1) == REPLACE
    given_up = plan(stalled, Step.BATCH, replaced_in_a_row=MAX_PRODUCER_RESETS_IN_A_ROW)
    assert given_up.stop
    assert "in a row" in given_up.reason
    # An abort needs no new producer: it is never given up for that.
    assert plan(ClientError("x"), Step.BATCH, replaced_in_a_row=99) == ABORT
