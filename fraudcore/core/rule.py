"""The fraud rules. A valid transaction is fraud when its amount exceeds the threshold (the
amount rule), or, when it is on, when its account is over the velocity limit (the velocity
rule, fraudcore/core/velocity.py), or both. Every fraud record names the rules that fired."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from fraudcore.core.codec import (
    DEFAULT_MAX_VALUE_BYTES,
    InvalidTransactionError,
    decode_amount,
    decode_source_amount,
)
from fraudcore.core.velocity import PartitionWindow, VelocityRule

DEFAULT_THRESHOLD = Decimal(900)


class Verdict(enum.Enum):
    LEGIT = "legit"
    FRAUD = "fraud"
    INVALID = "invalid"

    # Members are singletons compared by identity, so identity hashing is consistent; Enum's own
    # __hash__ is Python code, and the detector looks a verdict up for every record.
    __hash__ = object.__hash__


# The header on every fraud record: the rules that fired, comma-separated, in this order.
HEADER_RULES = "fraud.rules"
RULE_AMOUNT = "amount"
RULE_VELOCITY = "velocity"
RULES = (RULE_AMOUNT, RULE_VELOCITY)


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    reason: str = ""  # why a record is invalid; empty otherwise
    rules: bytes = b""  # a fraud record's HEADER_RULES value; empty otherwise


LEGIT = Classification(Verdict.LEGIT)
FRAUD_BY_AMOUNT = Classification(Verdict.FRAUD, rules=RULE_AMOUNT.encode())
FRAUD_BY_VELOCITY = Classification(Verdict.FRAUD, rules=RULE_VELOCITY.encode())
FRAUD_BY_BOTH = Classification(Verdict.FRAUD, rules=f"{RULE_AMOUNT},{RULE_VELOCITY}".encode())
FRAUD = FRAUD_BY_AMOUNT


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


def classify_with_velocity(
    value: bytes | None,
    timestamp: int,
    offset: int,
    window: PartitionWindow,
    *,
    threshold: Decimal = DEFAULT_THRESHOLD,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> Classification:
    """classify() with the velocity rule too: the record is counted in its partition's window
    (in offset order, so call this for each record of the partition in turn)."""
    try:
        source, amount = decode_source_amount(value, max_value_bytes)
    except InvalidTransactionError as exc:
        return Classification(Verdict.INVALID, str(exc))  # never counted
    by_velocity = window.fires(source, timestamp, offset)
    if is_fraud(amount, threshold):
        return FRAUD_BY_BOTH if by_velocity else FRAUD_BY_AMOUNT
    return FRAUD_BY_VELOCITY if by_velocity else LEGIT


def replay(
    rule: VelocityRule,
    records: Iterable[tuple[bytes | None, int, int]],
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> PartitionWindow:
    """A partition's window rebuilt from its (value, timestamp, offset) records, from a
    checkpoint's replay_from up to the committed offset: each counted exactly as
    classify_with_velocity counts it live (invalid ones not at all); verdicts are not needed."""
    window = PartitionWindow(rule)
    for value, timestamp, offset in records:
        classify_with_velocity(value, timestamp, offset, window, max_value_bytes=max_value_bytes)
    return window


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
