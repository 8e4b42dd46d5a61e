"""The detector's one error plan: for an error, where it happened and how old the batch is, the
whole plan of what to do. The loop (detector/app.py) carries a plan out and decides nothing.

One table, read top to bottom, the first matching row wins, as quix-streams keeps its error
callbacks in one place; tests/unit/test_error_policy.py checks it row by row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from fraudcore.errors import (
    ClientError,
    FencedError,
    NotAllowedError,
    OutputNotWrittenError,
    RetriableClientError,
    TransactionStalledError,
)

# A producer that failed this many times in a row, each time replaced, is not worth another try.
MAX_PRODUCER_RESETS_IN_A_ROW = 5
POLL_RETRY_SECONDS = 0.5
RETRY_SECONDS = 1.0


class Step(enum.Enum):
    """Where the error happened."""

    POLL = "the consumer's poll"
    BATCH = "a send or the commit of the open batch"
    ABORT = "the abort of a failed batch"
    NEW_PRODUCER = "making a replacement producer"
    RESTORE = "reading a partition's committed position and state"


class Age(enum.Enum):
    """A batch's age against TRANSACTION_TIMEOUT_MS: the broker aborts only an old one."""

    YOUNG = "young"
    OLD = "old"
    ANY = "any"


@dataclass(frozen=True)
class Plan:
    """What to do, in this order: abort the batch, replace the producer, go back to the
    committed offsets of every assigned partition; or try the same step again after
    `retry_after` seconds; or stop (nothing of the batch is committed, a restart resumes)."""

    abort: bool = False
    replace_producer: bool = False
    rewind: bool = False
    retry_after: float | None = None
    stop: bool = False
    reason: str = ""  # why it stops, where the error alone does not say


ABORT = Plan(abort=True, rewind=True)
REPLACE = Plan(replace_producer=True, rewind=True)
STOP = Plan(stop=True)

# (step, error, batch age, plan). The fencing rows first: a young transaction cannot have been
# aborted by the broker on timeout, so another producer with the same TRANSACTIONAL_ID fenced it,
# and going on would fence that one in turn; an old one was aborted by the broker (an outage).
POLICY: tuple[tuple[Step | None, type[ClientError], Age, Plan], ...] = (
    (None, NotAllowedError, Age.ANY, STOP),  # None: at any step; no retry cures the setup
    (Step.BATCH, FencedError, Age.YOUNG, STOP),
    (Step.BATCH, FencedError, Age.OLD, REPLACE),
    # The call may still be running on its thread: the producer cannot be trusted any more.
    (Step.BATCH, TransactionStalledError, Age.ANY, REPLACE),
    # An output failed: abort. kafka-python may have bumped the epoch mid-transaction, in which
    # case the abort itself fails (the ABORT row) and the producer is replaced.
    (Step.BATCH, OutputNotWrittenError, Age.ANY, ABORT),
    (Step.BATCH, ClientError, Age.ANY, ABORT),
    (Step.ABORT, ClientError, Age.ANY, REPLACE),
    # Nothing was consumed: poll again (e.g. the group coordinator is away with the broker).
    (Step.POLL, RetriableClientError, Age.ANY, Plan(retry_after=POLL_RETRY_SECONDS)),
    (Step.POLL, ClientError, Age.ANY, STOP),
    (Step.NEW_PRODUCER, FencedError, Age.ANY, STOP),
    (Step.NEW_PRODUCER, ClientError, Age.ANY, Plan(retry_after=RETRY_SECONDS)),
    (Step.RESTORE, ClientError, Age.ANY, Plan(retry_after=RETRY_SECONDS)),
)


def plan(
    error: ClientError,
    step: Step,
    *,
    young: bool = True,
    transactional: bool = True,
    replaced_in_a_row: int = 0,
) -> Plan:
    """The plan for `error` at `step`, for a batch that is `young` (younger than its transaction
    timeout). Without a transaction there is no producer to replace: aborting is flushing, and
    the input is read again. A producer replaced too often in a row is given up."""
    age = Age.YOUNG if young else Age.OLD
    for row_step, kind, row_age, row_plan in POLICY:
        if row_step in (None, step) and isinstance(error, kind) and row_age in (Age.ANY, age):
            found = row_plan
            break
    else:  # pragma: no cover - every step has a ClientError row
        raise AssertionError(f"no row for {type(error).__name__} at {step.name}")
    if found.replace_producer and not transactional:
        return replace(found, replace_producer=False)
    if found.replace_producer and replaced_in_a_row >= MAX_PRODUCER_RESETS_IN_A_ROW:
        return Plan(
            stop=True,
            reason=f"the producer failed {replaced_in_a_row} times in a row, each time "
            "replaced; giving up",
        )
    return found
