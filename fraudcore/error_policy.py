"""One error policy: what the detector does about each error of a batch, as a table.

quix-streams keeps its error callbacks in one module; here it is one table, read top to bottom,
the first matching row wins. tests/unit/test_error_policy.py checks it row by row.
"""

from __future__ import annotations

import enum

from fraudcore.errors import (
    ClientError,
    FencedError,
    NotAllowedError,
    OutputNotWrittenError,
    TransactionStalledError,
)


class Action(enum.Enum):
    ABORT = "abort the batch (its transaction), read its input again"
    REPLACE = "replace the producer, read the batch's input again"
    STOP = "stop the service: no retry can cure it, and nothing of the batch is committed"


class Age(enum.Enum):
    """A batch's age against TRANSACTION_TIMEOUT_MS: the broker aborts only an old one."""

    YOUNG = "young"
    OLD = "old"
    ANY = "any"


# (error, age, action). The fencing rows first: a young transaction cannot have been aborted by
# the broker on timeout, so another producer with the same TRANSACTIONAL_ID fenced it, and
# going on would fence that one in turn; an old one was aborted by the broker (after an outage).
POLICY: tuple[tuple[type[ClientError], Age, Action], ...] = (
    (NotAllowedError, Age.ANY, Action.STOP),
    (FencedError, Age.YOUNG, Action.STOP),
    (FencedError, Age.OLD, Action.REPLACE),
    # The call may still be running on its thread: the producer cannot be trusted any more.
    (TransactionStalledError, Age.ANY, Action.REPLACE),
    # An output failed: abort. kafka-python may have bumped the epoch mid-transaction, in which
    # case the abort itself fails and the producer is replaced (see Detector._recover).
    (OutputNotWrittenError, Age.ANY, Action.ABORT),
    (ClientError, Age.ANY, Action.ABORT),
)


def decide(error: ClientError, *, young: bool) -> Action:
    """The action for `error` of a batch that is `young` (younger than its transaction timeout)."""
    age = Age.YOUNG if young else Age.OLD
    for kind, row_age, action in POLICY:
        if isinstance(error, kind) and row_age in (Age.ANY, age):
            return action
    raise AssertionError("the last row matches every ClientError")  # pragma: no cover
