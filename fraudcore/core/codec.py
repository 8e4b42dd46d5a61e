"""Bytes <-> Transaction. The only module that knows the wire format.

Decoding is strict because a fraud rule is only as good as its input: anything that is not a
well-formed transaction raises `InvalidTransactionError`, whose text becomes the dead-letter reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fraudcore.core.model import Transaction

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


# json.dumps(text) for a str is exactly this C function (ensure_ascii), minus ~1 us of overhead.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def encode(tx: Transaction) -> bytes:
    """Compact JSON with the amount written with exactly two decimals (e.g. 900.00)."""
    head = "" if tx.id is None else f'"id":{_json_string(tx.id)},'
    tail = "" if tx.timestamp is None else f',"timestamp":{_json_string(tx.timestamp)}'
    return (
        f'{{{head}"source":{_json_string(tx.source)},"target":{_json_string(tx.target)},'
        f'"amount":{tx.amount:.2f},"currency":{_json_string(tx.currency)}{tail}}}'
    ).encode()


def encode_key(tx: Transaction) -> bytes:
    """The record key: the source account, so one account's transactions share a partition."""
    return tx.source.encode()


# The layout `encode` writes (and the tutorial's json.dumps, which adds a space after ':' and
# ','): the fields in this order, strings of printable ASCII without quotes, backslashes or escapes,
# and an amount with two decimals and at most 15 integer digits (no leading zero, so valid JSON;
# small enough to be finite as a float). A value in this layout is always a valid transaction, so
# its source and amount (groups 1 and 2) can be read without parsing the JSON; any other value
# goes through the strict parser.
_CHARS = rb"[\x20\x21\x23-\x5b\x5d-\x7e]"
_TEXT = rb'"' + _CHARS + rb'*"'
_NON_EMPTY_TEXT = rb'"' + _CHARS + rb'+"'
_ENCODED_LAYOUT = re.compile(
    rb'\{(?:"id": ?' + _TEXT + rb", ?)?"
    rb'"source": ?"(' + _CHARS + rb'+)", ?"target": ?' + _NON_EMPTY_TEXT + rb", ?"
    rb'"amount": ?((?:0|[1-9][0-9]{0,14})\.[0-9]{2}), ?'
    rb'"currency": ?' + _NON_EMPTY_TEXT + rb'(?:, ?"timestamp": ?' + _TEXT + rb")?\}"
)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [name for name, _ in pairs]
        raise _DuplicateFieldError(next(name for name in names if names.count(name) > 1))
    return obj


def _reject_constant(name: str) -> Any:
    raise _NonFiniteConstantError(name)


# Built once: json.loads(text, **options) would build a new decoder for every record.
_JSON_DECODER = json.JSONDecoder(
    parse_float=Decimal,  # exact amounts: 900.01 stays 900.01
    parse_constant=_reject_constant,  # NaN, Infinity
    object_pairs_hook=_object_without_duplicates,
)


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
        return _JSON_DECODER.decode(text)
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


def encoded_layout_amount(value: bytes | None) -> Decimal | None:
    """The amount of a value in exactly the layout `encode` writes, else None (parse it fully)."""
    if value is None:
        return None
    match = _ENCODED_LAYOUT.fullmatch(value)
    return None if match is None else Decimal(match.group(2).decode("ascii"))


def decode_amount(value: bytes | None, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Decimal:
    """The amount of a valid transaction, all the rule needs; raises exactly as decode() does.

    Values in the generator's own layout skip the JSON parser (about 6x faster); any other value
    gets the full, strict decode.
    """
    if value is not None and len(value) <= max_bytes:
        amount = encoded_layout_amount(value)
        if amount is not None:
            return amount
    return decode(value, max_bytes).amount


def decode_source_amount(
    value: bytes | None, max_bytes: int = DEFAULT_MAX_VALUE_BYTES
) -> tuple[str, Decimal]:
    """The source account and amount of a valid transaction (what the velocity rule needs);
    raises exactly as decode() does. The same fast path as decode_amount: a string in the
    encoded layout has no escapes, so its bytes are its text."""
    if value is not None and len(value) <= max_bytes:
        match = _ENCODED_LAYOUT.fullmatch(value)
        if match is not None:
            source, amount = match.groups()
            return source.decode("ascii"), Decimal(amount.decode("ascii"))
    tx = decode(value, max_bytes)
    return tx.source, tx.amount
