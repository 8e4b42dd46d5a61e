"""What every rule type is: a name and validated settings (a pydantic model), the state it keeps
per input partition, and how that state is made durable.

A rule's state answers one question per valid transaction, in offset order within its input
partition: does this transaction, with everything before it, fire the rule? The state kinds say
how the state at a committed offset is found again by a detector that did not hold it (a new
owner of the partition, or the same detector after a failed batch):

- NONE: there is no state; the transaction alone decides.
- REPLAY: the state is a function of a bounded stretch of the input (a time window), so it is
  rebuilt by reading the input again from the first offset it still holds, which each commit
  records in its offset metadata (fraudcore/core/rules/ruleset.py).
- CHANGELOG: the state is unbounded in time, so it is keyed by account and every change is
  written to a compacted changelog topic in the same batch (the same Kafka transaction in
  exactly_once) as the outputs and the input offsets; it is read back from there.
"""

from __future__ import annotations

import enum
import re
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, Overflow, Rounded
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

# Rule names go into the comma-separated fraud.rules header and into changelog topic names.
NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
NAME_RE = re.compile(NAME_PATTERN)

# Decimal arithmetic that never rounds: amounts, sums and squares are exact, so that the
# detector and the audit's reference (which uses fractions) never disagree at a tie. A result
# that would need rounding raises instead of being rounded.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, Overflow, Rounded])


class StateKind(enum.Enum):
    NONE = "none: the transaction alone decides"
    REPLAY = "rebuilt by reading the input again from the first offset it holds"
    CHANGELOG = "keyed by account, written to a compacted changelog topic and read back"


class RuleState(Protocol):
    """One rule's state for one input partition."""

    def fires(
        self, account: str, amount: Decimal, timestamp: int, offset: int, stream_time: int
    ) -> bool:
        """Count one valid transaction (in offset order) and say whether the rule fires on it.
        `stream_time`: the greatest timestamp of the partition's valid transactions so far,
        this one included."""


class ReplayState(RuleState, Protocol):
    """A REPLAY rule's state: what it holds lies in the input from first_offset_held() on."""

    def first_offset_held(self) -> int | None:
        """The offset of the earliest transaction still held; None when nothing is."""

    def __len__(self) -> int:
        """Transactions held."""

    @property
    def accounts(self) -> int:
        """Accounts with anything held."""


class ChangelogState(RuleState, Protocol):
    """A CHANGELOG rule's state: per account, a value of bytes (None: the account is gone)."""

    def changes(self) -> list[tuple[str, bytes | None]]:
        """Every account changed since the last call, with its value now (None: dropped, a
        tombstone), in the order they were last changed."""

    def load(self, account: str, value: bytes | None) -> None:
        """Restore one changelog record, in changelog order (the last value of a key wins)."""

    def __len__(self) -> int:
        """Accounts held."""


class Rule(BaseModel):
    """A rule of the rules file: its name (what fraud.rules says), its type and its settings.
    Each rule type subclasses this with its settings and says how its state is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    type: str

    state_kind: ClassVar[StateKind] = StateKind.NONE
    needs_account: ClassVar[bool] = False  # does it read the source account?

    def new_state(self) -> RuleState:
        raise NotImplementedError

    def replay_window_ms(self) -> float:
        """A REPLAY rule's window W in ms (the replay reaches back 2W of stream time)."""
        return 0.0

    def describe(self) -> str:
        """One phrase for logs and the audit's report."""
        settings = self.model_dump(exclude={"name", "type"})
        return (
            f"{self.name} ({self.type} " + " ".join(f"{k}={v}" for k, v in settings.items()) + ")"
        )
