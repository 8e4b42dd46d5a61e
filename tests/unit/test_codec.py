"""The wire format: round trips, the tutorial's records, and every kind of bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from fraudcore.codec import InvalidTransactionError, decode, encode, encode_key
from fraudcore.model import Transaction, TransactionFactory
from tests.samples import BAD_VALUES, tutorial_record


def test_encode_writes_compact_json_with_two_decimals() -> None:
    tx = Transaction(id="i-1", source="A", target="B", amount=Decimal(900), timestamp="t")
    assert encode(tx) == (
        b'{"id":"i-1","source":"A","target":"B","amount":900.00,"currency":"EUR","timestamp":"t"}'
    )


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
