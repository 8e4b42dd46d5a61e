"""The fraud rule: a valid transaction whose amount exceeds the threshold is fraud."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES, InvalidTransactionError, decode_amount

DEFAULT_THRESHOLD = Decimal(900)


class Verdict(enum.Enum):
    LEGIT = "legit"
    FRAUD = "fraud"
    INVALID = "invalid"

    # Members are singletons compared by identity, so identity hashing is consistent; Enum's own
    # __hash__ is Python code, and the detector looks a verdict up for every record.
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    reason: str = ""  # why a record is invalid; empty otherwise


LEGIT = Classification(Verdict.LEGIT)
FRAUD = Classification(Verdict.FRAUD)


def is_fraud(amount: Decimal, threshold: Decimal = DEFAULT_THRESHOLD) -> bool:
    """Strictly greater: exactly the threshold (900, 900.00) is legit, 900.01 is fraud."""
    return amount > threshold


def classify(
    value: bytes | None,
    threshold: Decimal = DEFAULT_THRESHOLD,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> Classification:
    """Decide where one record value goes. Never raises on bad input."""
    try:
        amount = decode_amount(value, max_value_bytes)
    except InvalidTransactionError as exc:
        return Classification(Verdict.INVALID, str(exc))
    return FRAUD if is_fraud(amount, threshold) else LEGIT


# The header on every fraud record: the rules that fired, comma-separated, in this order.
HEADER_RULES = "fraud.rules"
RULE_AMOUNT = "amount"
RULE_VELOCITY = "velocity"
RULES = (RULE_AMOUNT, RULE_VELOCITY)

# Headers added to a dead-lettered record, so an operator can find and replay its source.
HEADER_REASON = "error.reason"
HEADER_SOURCE_TOPIC = "error.source.topic"
HEADER_SOURCE_PARTITION = "error.source.partition"
HEADER_SOURCE_OFFSET = "error.source.offset"


def dead_letter_headers(
    headers: list[tuple[str, bytes]] | None, reason: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The record's own headers, then why it is invalid and where it came from."""
    return [
        *(headers or ()),
        (HEADER_REASON, reason.encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
    ]
