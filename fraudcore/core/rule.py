"""What the detector decides for a record, and the headers that say so. A valid transaction is
fraud when any rule of the rule set fires (fraudcore/core/rules/), and its fraud record names
the rules that fired; an invalid one is dead-lettered with why and where it came from."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_THRESHOLD = Decimal(900)


class Verdict(enum.Enum):
    LEGIT = "legit"
    FRAUD = "fraud"
    INVALID = "invalid"

    # Members are singletons compared by identity, so identity hashing is consistent; Enum's own
    # __hash__ is Python code, and the detector looks a verdict up for every record.
    __hash__ = object.__hash__


# The header on every fraud record: the rules that fired, comma-separated, in the rule set's order.
HEADER_RULES = "fraud.rules"
# The names of the rules made from FRAUD_AMOUNT_THRESHOLD and VELOCITY_* (without a rules file).
RULE_AMOUNT = "amount"
RULE_VELOCITY = "velocity"
RULES = (RULE_AMOUNT, RULE_VELOCITY)


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    reason: str = ""  # why a record is invalid; empty otherwise
    rules: bytes = b""  # a fraud record's HEADER_RULES value; empty otherwise


LEGIT = Classification(Verdict.LEGIT)


def without_rules_header(headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The record's headers less any HEADER_RULES: that header is the detector's to set."""
    return [(name, value) for name, value in headers or () if name != HEADER_RULES]


# Headers added to a dead-lettered record, so an operator can find and replay its source.
HEADER_REASON = "error.reason"


def reason_code(reason: str) -> str:
    """The code of a dead-letter reason ("not_json: Expecting value ..." -> "not_json")."""
    return reason.partition(":")[0].strip() or "unknown"


HEADER_SOURCE_TOPIC = "error.source.topic"
HEADER_SOURCE_PARTITION = "error.source.partition"
HEADER_SOURCE_OFFSET = "error.source.offset"


def dead_letter_headers(
    headers: Sequence[tuple[str, bytes]] | None,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    """The record's own headers, then why it is invalid and where it came from."""
    return [
        *(headers or ()),
        (HEADER_REASON, reason.encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]
