"""Bytes <-> Transaction. The only module that knows the wire format.

Decoding is strict because a fraud rule is only as good as its input: anything that is not a
well-formed transaction raises `InvalidTransactionError`, whose text becomes the dead-letter reason.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fraudcore.model import Transaction

DEFAULT_MAX_VALUE_BYTES = 64 * 1024
REQUIRED_STRING_FIELDS = ("source", "target", "currency")
OPTIONAL_STRING_FIELDS = ("id", "timestamp")


class InvalidTransactionError(ValueError):
    """A record that is not a valid transaction. Not retriable: the same bytes fail the same way."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class _DuplicateFieldError(ValueError):
    pass


class _NonFiniteConstantError(ValueError):
    pass


def encode(tx: Transaction) -> bytes:
    """Compact JSON with the amount written with exactly two decimals (e.g. 900.00)."""
    parts = []
    if tx.id is not None:
        parts.append(f'"id":{json.dumps(tx.id)}')
    parts.append(f'"source":{json.dumps(tx.source)}')
    parts.append(f'"target":{json.dumps(tx.target)}')
    parts.append(f'"amount":{tx.amount:.2f}')
    parts.append(f'"currency":{json.dumps(tx.currency)}')
    if tx.timestamp is not None:
        parts.append(f'"timestamp":{json.dumps(tx.timestamp)}')
    return ("{" + ",".join(parts) + "}").encode()


def encode_key(tx: Transaction) -> bytes:
    """The record key: the source account, so one account's transactions share a partition."""
    return tx.source.encode()


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [name for name, _ in pairs]
        raise _DuplicateFieldError(next(name for name in names if names.count(name) > 1))
    return obj


def _reject_constant(name: str) -> Any:
    raise _NonFiniteConstantError(name)


def _parse_json(value: bytes | None, max_bytes: int) -> Any:
    if not value:
        raise InvalidTransactionError("empty", "the record has no value")
    if len(value) > max_bytes:
        raise InvalidTransactionError("too_large", f"{len(value)} bytes > {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTransactionError("not_utf8", str(exc)) from None
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except _NonFiniteConstantError as exc:
        raise InvalidTransactionError("bad_amount", f"non-finite constant {exc}") from None
    except _DuplicateFieldError as exc:
        raise InvalidTransactionError("duplicate_field", str(exc)) from None
    except RecursionError:
        raise InvalidTransactionError("too_deep", "nesting exceeds the parser's limit") from None
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        raise InvalidTransactionError("not_json", str(exc)) from None


def _amount(raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
        raise InvalidTransactionError("bad_amount", f"not a number: {type(raw).__name__}")
    amount = Decimal(raw)
    try:
        as_float = float(amount)
    except OverflowError:
        as_float = float("inf")
    if not amount.is_finite() or as_float in (float("inf"), float("-inf")):
        raise InvalidTransactionError("bad_amount", "not a finite number")
    if amount < 0:
        raise InvalidTransactionError("bad_amount", "negative")
    return amount


def decode(value: bytes | None, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Transaction:
    """Parse and validate one record value; raise InvalidTransactionError with a reason code."""
    obj = _parse_json(value, max_bytes)
    if not isinstance(obj, dict):
        raise InvalidTransactionError("not_object", f"top-level JSON is a {type(obj).__name__}")
    if "amount" not in obj:
        raise InvalidTransactionError("missing_field", "amount")
    amount = _amount(obj["amount"])
    for name in REQUIRED_STRING_FIELDS:
        if name not in obj:
            raise InvalidTransactionError("missing_field", name)
        if not isinstance(obj[name], str) or not obj[name]:
            raise InvalidTransactionError("bad_field", f"{name} must be a non-empty string")
    for name in OPTIONAL_STRING_FIELDS:
        if obj.get(name) is not None and not isinstance(obj[name], str):
            raise InvalidTransactionError("bad_field", f"{name} must be a string")
    return Transaction(
        source=obj["source"],
        target=obj["target"],
        amount=amount,
        currency=obj["currency"],
        id=obj.get("id"),
        timestamp=obj.get("timestamp"),
    )
