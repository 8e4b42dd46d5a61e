"""The wire format: round trips, the tutorial's records, and every kind of bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudcore.core.codec import (
    InvalidTransactionError,
    decode,
    decode_amount,
    encode,
    encode_key,
    encoded_layout_amount,
)
from fraudcore.core.model import Transaction, TransactionFactory
from tests.samples import BAD_VALUES, tutorial_record


def test_encode_writes_compact_json_with_two_decimals() -> None:
    tx = Transaction(id="i-1", source="A", target="B", amount=Decimal(900), timestamp="t")
    assert encode(tx) == (
        b'{"id":"i-1","source":"A","target":"B","amount":900.00,"currency":"EUR","timestamp":"t"}'
    )


@pytest.mark.parametrize(
    ("tx_id", "timestamp", "expected"),
    [
        (None, None, b'{"source":"A","target":"B","amount":1.50,"currency":"EUR"}'),
        ("i", None, b'{"id":"i","source":"A","target":"B","amount":1.50,"currency":"EUR"}'),
        (None, "t", b'{"source":"A","target":"B","amount":1.50,"currency":"EUR","timestamp":"t"}'),
        (
            'q"\\é',
            "t",
            b'{"id":"q\\"\\\\\\u00e9","source":"A","target":"B","amount":1.50,"currency":"EUR",'
            b'"timestamp":"t"}',
        ),
    ],
)
def test_optional_fields_are_left_out_and_strings_escaped(
    tx_id: str | None, timestamp: str | None, expected: bytes
) -> None:
    tx = Transaction(source="A", target="B", amount=Decimal("1.5"), id=tx_id, timestamp=timestamp)
    assert encode(tx) == expected
    assert json.loads(expected)["amount"] == 1.5
    assert decode(encode(tx)) == tx._replace(amount=Decimal("1.50"))


def test_round_trip_keeps_every_field() -> None:
    factory = TransactionFactory(seed=7)
    for _ in range(200):
        tx = factory.next()
        assert decode(encode(tx)) == tx


def test_key_is_the_source_account() -> None:
    tx = TransactionFactory(seed=1).next()
    assert encode_key(tx) == tx.source.encode()


def test_tutorial_record_is_valid() -> None:
    tx = decode(tutorial_record(123.45))
    assert (tx.amount, tx.id, tx.timestamp) == (Decimal("123.45"), None, None)


def test_integer_amount_and_unknown_fields_are_accepted() -> None:
    value = b'{"source":"A","target":"B","amount":901,"currency":"EUR","channel":{"web":true}}'
    assert decode(value).amount == Decimal(901)


def test_amount_is_exact_not_float() -> None:
    # As a float this would round to 900.0 and hide that it is over the threshold.
    value = b'{"source":"A","target":"B","amount":900.0000000000000001,"currency":"EUR"}'
    assert decode(value).amount > 900


@pytest.mark.parametrize(("label", "value", "reason"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_raise_with_reason(label: str, value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidTransactionError) as caught:
        decode(value)
    assert caught.value.reason == reason, label
    assert str(caught.value).startswith(reason)


def test_size_limit_is_configurable() -> None:
    value = tutorial_record(1.0)
    assert decode(value, max_bytes=len(value)).amount == Decimal("1.0")
    with pytest.raises(InvalidTransactionError, match="too_large"):
        decode(value, max_bytes=len(value) - 1)


def test_generated_values_are_json_objects_with_the_tutorial_fields() -> None:
    obj = json.loads(encode(TransactionFactory(seed=3).next()))
    assert {"source", "target", "amount", "currency", "id", "timestamp"} == set(obj)
    assert obj["currency"] == "EUR"
    assert obj["timestamp"].endswith("Z")


# ----------------------------------------------------------------- the shortcut for encode's layout


def test_generated_values_take_the_shortcut() -> None:
    # The detector's speed rests on this: a change to encode() must keep the layout readable.
    factory = TransactionFactory(seed=11)
    for _ in range(500):
        tx = factory.next()
        assert encoded_layout_amount(encode(tx)) == tx.amount
    tutorial = tutorial_record(123.45)  # json.dumps's spaces, and no id or timestamp
    assert encoded_layout_amount(tutorial) == Decimal("123.45")


def _strict(value: bytes | None, max_bytes: int = 64 * 1024) -> Decimal | str:
    try:
        return decode(value, max_bytes).amount
    except InvalidTransactionError as exc:
        return exc.reason


def _either_path(value: bytes | None, max_bytes: int = 64 * 1024) -> Decimal | str:
    try:
        return decode_amount(value, max_bytes)
    except InvalidTransactionError as exc:
        return exc.reason


@pytest.mark.parametrize(("label", "value", "reason"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_decode_amount_rejects_what_decode_rejects(
    label: str, value: bytes | None, reason: str
) -> None:
    assert _either_path(value) == reason, label


def test_the_size_limit_applies_to_the_shortcut_too() -> None:
    value = encode(TransactionFactory(seed=2).next())
    assert _either_path(value, max_bytes=len(value) - 1) == "too_large"


# Pieces of a value in encode's layout, and near misses: escapes, quotes, non-ASCII, empty
# strings, amounts that are not valid JSON numbers (leading zeros, signs) or not two decimals.
_TEXTS = st.sampled_from(
    ["", "A", "EUR", 'a"b', "a\\b", "\\u0041", "é", "x y", "\t", "~"]
) | st.text(max_size=8)
_AMOUNTS = st.sampled_from(
    [
        "0.00", "900.00", "900.01", "899.99", "00.01", "01.00", "-1.00", "+1.00", "1.0", "1.000",
        "1e3", "1.00e1", "NaN", "Infinity", "999999999999999.99", "1000000000000000.00",
        "1" * 400 + ".00", ".50", "5.", "",
    ]
) | st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)  # fmt: skip


@st.composite
def _layout_like_values(draw: st.DrawFn) -> bytes:
    fields = [
        ("id", '"' + draw(_TEXTS) + '"'),
        ("source", '"' + draw(_TEXTS) + '"'),
        ("target", '"' + draw(_TEXTS) + '"'),
        ("amount", draw(_AMOUNTS)),
        ("currency", '"' + draw(_TEXTS) + '"'),
        ("timestamp", '"' + draw(_TEXTS) + '"'),
    ]
    kept = [field for field in fields if draw(st.booleans()) or field[0] not in ("id", "timestamp")]
    if draw(st.booleans()):
        kept = draw(st.permutations(kept))
    separator, colon = draw(st.sampled_from([",", ", ", " ,"])), draw(st.sampled_from([":", ": "]))
    return ("{" + separator.join(f'"{k}"{colon}{v}' for k, v in kept) + "}").encode()


@settings(max_examples=3000, deadline=None)
@given(_layout_like_values())
def test_the_shortcut_agrees_with_the_strict_decode(value: bytes) -> None:
    assert _either_path(value) == _strict(value)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_the_shortcut_agrees_on_any_bytes(value: bytes) -> None:
    assert _either_path(value) == _strict(value)
