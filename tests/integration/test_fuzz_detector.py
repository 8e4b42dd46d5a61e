"""Fuzz the detector on a real broker: hundreds of generated values, one detector run.

Hypothesis draws the values (random bytes, JSON of every type, and transaction-like objects
with amounts at the 900 boundary and at the limits of floats), all are produced at once, ONE
detector routes them, and each must come out exactly once, byte for byte, in the topic an
oracle independent of the detector's code picks from how the test made the value: for the
transaction-like ones from the amount's JSON text with Decimal (fraud iff amount > 900), and
for everything else the dead-letter topic, because it is made so that it cannot hold a top-level
"amount" field, without which no value is a transaction.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fraudcore.core.rule import Verdict
from fraudcore.core.rules.ruleset import classify
from tests.kafka_helpers import (
    Service,
    Topics,
    consume,
    create_topic,
    produce,
    run_command,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 400
THRESHOLD = Decimal(900)

BOUNDARY_AMOUNTS = [
    "899.99", "900", "900.00", "900.01", "900.0", "9E2", "9.00e+2", "90000e-2", "900.001",
    "899.999999999999999999", "900.000000000000000001", "900.0000000000000000000000000001",
    "0", "0.0", "-0", "-0.0", "0.01", "-0.01", "1e-400", "-1e-400",
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308", "1e308",
    "1e309", "-1e308", "5e-324", "2.2250738585072014e-308", "1e999999",
    str(int(sys.float_info.max)),  # the largest float, written out as an integer
    "1" + "0" * 309,
    "9007199254740993",
    "900000000000000000000000000000000",
]  # fmt: skip


# The amount exactly as it is written in the JSON text: every branch is a valid JSON number.
amount_texts = st.one_of(
    st.sampled_from(BOUNDARY_AMOUNTS),
    st.decimals(min_value=Decimal("899.98"), max_value=Decimal("900.02"), places=2).map(str),
    st.decimals(min_value=Decimal("899.9999"), max_value=Decimal("900.0001"), allow_nan=False).map(
        lambda d: format(d, "f")
    ),
    st.floats(min_value=899.99, max_value=900.01).map(repr),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-5, max_value=10**30).map(str),
    st.integers(min_value=10**300, max_value=10**320).map(str),
)

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
)  # floats include NaN and Infinity, which json.dumps writes as bare words
# Any JSON but an object with an "amount" field: never a transaction, so always dead-lettered.
json_anything = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda name: name != "amount"), inner)
    ),
    max_leaves=12,
)
json_finite = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
# A field's value: a good string mostly (so that the amount decides), else empty or mistyped.
good_strings = st.text(min_size=1, max_size=8)
bad_values = st.one_of(st.just(""), st.none(), st.integers(), st.booleans(), st.lists(st.text()))


@st.composite
def transaction_like(draw: st.DrawFn) -> tuple[bytes, Verdict]:
    """A JSON object shaped like a transaction, and the verdict the oracle gives it."""
    amount = draw(amount_texts)
    parts = {"amount": amount}
    valid = True
    for name in ("source", "target", "currency"):
        if draw(st.integers(0, 19)) == 0:
            valid = False  # the field is missing
            continue
        value = draw(bad_values if draw(st.integers(0, 14)) == 0 else good_strings)
        valid = valid and isinstance(value, str) and value != ""
        parts[name] = json.dumps(value)
    for name in ("id", "timestamp"):
        if draw(st.booleans()):
            good = st.none() | st.text(max_size=8)  # both optional fields may be null
            value = draw(st.integers() if draw(st.integers(0, 14)) == 0 else good)
            valid = valid and (value is None or isinstance(value, str))
            parts[name] = json.dumps(value)
    if draw(st.integers(0, 9)) == 0:
        parts["note"] = json.dumps(draw(json_finite))  # unknown fields are ignored
    fields = [f'"{name}":{text}' for name, text in parts.items()]
    if draw(st.integers(0, 29)) == 0:
        fields.append('"amount":1')  # a duplicate field makes any object invalid
        valid = False
    fields = draw(st.permutations(fields))
    space = draw(st.sampled_from(["", " ", "\n\t "]))
    encoded = ("{" + space + ("," + space).join(fields) + space + "}").encode()
    return encoded, oracle(amount, valid)


def oracle(amount_text: str, fields_valid: bool) -> Verdict:
    """The rule from the amount's text alone: a finite, non-negative number within float range;
    fraud iff strictly above 900 (so 900, 900.00 and 9E2 are legit)."""
    try:
        amount = Decimal(amount_text)
    except InvalidOperation:
        return Verdict.INVALID
    if not fields_valid or not amount.is_finite() or math.isinf(float(amount)) or amount < 0:
        return Verdict.INVALID
    return Verdict.FRAUD if amount > THRESHOLD else Verdict.LEGIT


def has_no_amount_field(value: bytes) -> bool:
    """`value` is surely no transaction: the standard library's JSON parser (not the detector's
    codec) reads no object with an "amount" field from it. Random bytes almost never are one."""
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # not JSON (nor UTF-8 JSON) at all
        return True
    return not (isinstance(parsed, dict) and "amount" in parsed)


# (value, the verdict the test expects, whether it is transaction-like)
Example = tuple[bytes, Verdict, bool]

values: st.SearchStrategy[Example] = st.one_of(
    st.binary(max_size=300).filter(has_no_amount_field).map(lambda b: (b, Verdict.INVALID, False)),
    json_anything.map(lambda v: (json.dumps(v).encode(), Verdict.INVALID, False)),
    transaction_like().map(lambda made: (*made, True)),
    transaction_like().map(lambda made: (*made, True)),
    transaction_like().map(lambda made: (*made, True)),
)


def draw_examples(count: int) -> list[Example]:
    """`count` values from Hypothesis, gathered first so that one detector run covers them."""
    found: list[Example] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(values)
    def gather(example: Example) -> None:
        found.append(example)

    gather()
    return found


def test_oracle_agrees_with_the_rule_on_fixed_boundaries() -> None:
    for text in BOUNDARY_AMOUNTS:
        value = f'{{"source":"A","target":"B","amount":{text},"currency":"EUR"}}'.encode()
        assert classify(value).verdict is oracle(text, fields_valid=True), text


def test_generated_values_are_routed_once_each_to_the_right_topic(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    examples = draw_examples(EXAMPLES)
    # An empty value and an object without fields are no transactions either.
    examples += [(b"", Verdict.INVALID, False), (b"{}", Verdict.INVALID, False)]
    kinds = Counter("tx" if tx_like else "other" for _, _, tx_like in examples)
    assert kinds["tx"] > EXAMPLES // 3, kinds
    assert kinds["other"] > EXAMPLES // 20, kinds
    records: list[tuple[bytes | None, bytes | None]] = [(b"fuzz-null", None)]  # no value at all
    expected_verdict: dict[bytes | None, Verdict] = {b"fuzz-null": Verdict.INVALID}
    for i, (made, verdict, _) in enumerate(examples):
        records.append((f"fuzz-{i}".encode(), made))
        expected_verdict[f"fuzz-{i}".encode()] = verdict
    # The rule first, on its own: a disagreement here is the rule's, not the detector's.
    disagree = [
        f"{value!r}: rule {classify(value, THRESHOLD).verdict}, expected {expected_verdict[key]}"
        for key, value in records
        if classify(value, THRESHOLD).verdict is not expected_verdict[key]
    ]
    assert not disagree, "\n".join(disagree)
    topic_of = {Verdict.LEGIT: topics.legit, Verdict.FRAUD: topics.fraud}
    topic_of[Verdict.INVALID] = topics.invalid

    create_topic(bootstrap, topics.input, partitions=3)
    produce(bootstrap, topics.input, records)
    env = {**topics.env(bootstrap), "FRAUD_AMOUNT_THRESHOLD": str(THRESHOLD)}
    detector = Service.module("detector", env, tmp_path)
    try:
        outputs = consume(
            bootstrap,
            [topics.legit, topics.fraud, topics.invalid],
            expected=len(records),
            timeout=90,
            settle=2.0,
        )
        assert detector.running(), detector.output()
        assert detector.stop() == 0, detector.output()
    finally:
        detector.kill()

    by_key: dict[bytes | None, list[Any]] = {}
    for record in outputs:
        by_key.setdefault(record.key, []).append(record)
    assert set(by_key) == set(expected_verdict)
    problems = []
    for key, value in records:
        found = by_key[key]
        if len(found) != 1:
            problems.append(f"{key!r}: {len(found)} copies of {value!r}")
        elif found[0].value != value:
            problems.append(f"{key!r}: bytes changed from {value!r} to {found[0].value!r}")
        elif found[0].topic != topic_of[expected_verdict[key]]:
            problems.append(f"{key!r}: {value!r} in {found[0].topic}, not {expected_verdict[key]}")
    assert not problems, "\n".join(problems)
    print(f"{len(records)} values: " + json.dumps(Counter(r.topic for r in outputs)))

    done = run_command(
        [sys.executable, "-m", "detector.audit", "--json"], {**os.environ, **env}, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["counts"]["input"] == len(records)
