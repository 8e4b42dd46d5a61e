"""The rule's boundary and the routing decision for any bytes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fraudcore.core.rule import Verdict
from fraudcore.core.rules.ruleset import classify
from tests.samples import BAD_VALUES, tutorial_record


@pytest.mark.parametrize(
    ("amount", "fraud"),
    [("899.99", False), ("900", False), ("900.00", False), ("900.01", True), ("1000", True)],
)
def test_threshold_boundary(amount: str, fraud: bool) -> None:
    value = f'{{"source":"A","target":"B","amount":{amount},"currency":"EUR"}}'.encode()
    assert classify(value).verdict is (Verdict.FRAUD if fraud else Verdict.LEGIT)


def test_threshold_is_configurable() -> None:
    assert classify(tutorial_record(150.0), threshold=Decimal(100)).verdict is Verdict.FRAUD
    assert classify(tutorial_record(100.0), threshold=Decimal(100)).verdict is Verdict.LEGIT


@pytest.mark.parametrize(("label", "value", "reason"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_values_are_invalid_not_exceptions(
    label: str, value: bytes | None, reason: str
) -> None:
    result = classify(value)
    assert result.verdict is Verdict.INVALID, label
    assert result.reason.startswith(reason)


def test_valid_records_have_no_reason() -> None:
    assert classify(tutorial_record(5.0)).reason == ""
