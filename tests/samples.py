"""Record values shared by unit and integration tests: every kind of bad input, and good ones."""

from __future__ import annotations

import json

# (label, value, reason code the detector must give)
BAD_VALUES: list[tuple[str, bytes | None, str]] = [
    ("not json", b"hello, world", "not_json"),
    ("trailing garbage", b'{"source":"A","target":"B","amount":1,"currency":"EUR"} x', "not_json"),
    ("truncated", b'{"source":"A","target":"B","amount":1', "not_json"),
    ("not an object", b"[1, 2, 3]", "not_object"),
    ("bare number", b"950.5", "not_object"),
    ("not utf-8", b'{"source":"\xff\xfe","target":"B","amount":1,"currency":"EUR"}', "not_utf8"),
    ("utf-16", json.dumps({"amount": 1}).encode("utf-16"), "not_utf8"),
    ("empty", b"", "empty"),
    ("null value", None, "empty"),
    ("missing amount", b'{"source":"A","target":"B","currency":"EUR"}', "missing_field"),
    ("missing source", b'{"target":"B","amount":5,"currency":"EUR"}', "missing_field"),
    ("missing target", b'{"source":"A","amount":5,"currency":"EUR"}', "missing_field"),
    ("missing currency", b'{"source":"A","target":"B","amount":5}', "missing_field"),
    ("amount string", b'{"source":"A","target":"B","amount":"950","currency":"EUR"}', "bad_amount"),
    ("amount boolean", b'{"source":"A","target":"B","amount":true,"currency":"EUR"}', "bad_amount"),
    ("amount null", b'{"source":"A","target":"B","amount":null,"currency":"EUR"}', "bad_amount"),
    ("amount NaN", b'{"source":"A","target":"B","amount":NaN,"currency":"EUR"}', "bad_amount"),
    (
        "amount Infinity",
        b'{"source":"A","target":"B","amount":Infinity,"currency":"EUR"}',
        "bad_amount",
    ),
    (
        "amount -Infinity",
        b'{"source":"A","target":"B","amount":-Infinity,"currency":"EUR"}',
        "bad_amount",
    ),
    (
        "amount overflows",
        b'{"source":"A","target":"B","amount":1e999,"currency":"EUR"}',
        "bad_amount",
    ),
    (
        "huge integer",
        b'{"source":"A","target":"B","amount":1' + b"0" * 400 + b',"currency":"EUR"}',
        "bad_amount",
    ),
    (
        "amount negative",
        b'{"source":"A","target":"B","amount":-0.01,"currency":"EUR"}',
        "bad_amount",
    ),
    (
        "amount object",
        b'{"source":"A","target":"B","amount":{"v":1},"currency":"EUR"}',
        "bad_amount",
    ),
    ("source not a string", b'{"source":7,"target":"B","amount":5,"currency":"EUR"}', "bad_field"),
    (
        "id not a string",
        b'{"id":1,"source":"A","target":"B","amount":5,"currency":"EUR"}',
        "bad_field",
    ),
    (
        "duplicate amount",
        b'{"source":"A","target":"B","amount":5000,"amount":1,"currency":"EUR"}',
        "duplicate_field",
    ),
    ("absurd nesting", b"[" * 20_000 + b"]" * 20_000, "too_deep"),
    ("nested in a field", b'{"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "too_deep"),
    ("oversized", b'{"pad":"' + b"x" * 70_000 + b'"}', "too_large"),
]


def tutorial_record(amount: float, source: str = "AB12CD", target: str = "XY98ZW") -> bytes:
    """A record exactly as the tutorial's generator wrote it: four fields, no id or timestamp."""
    return json.dumps(
        {"source": source, "target": target, "amount": amount, "currency": "EUR"}
    ).encode()
