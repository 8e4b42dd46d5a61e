"""Random transactions: reproducible, well spread, about one in ten over 900."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from fraudcore.core.model import TransactionFactory, utc_now_iso, uuid4_text


def test_same_seed_same_stream() -> None:
    first = TransactionFactory(seed=42, clock=lambda: "t")
    second = TransactionFactory(seed=42, clock=lambda: "t")
    assert [first.next() for _ in range(100)] == [second.next() for _ in range(100)]


def test_different_seed_different_stream() -> None:
    assert TransactionFactory(seed=1).next().id != TransactionFactory(seed=2).next().id


def test_amounts_are_cents_between_1_and_1000_and_about_10_percent_fraud() -> None:
    factory = TransactionFactory(seed=5)
    amounts = [factory.next().amount for _ in range(20_000)]
    assert min(amounts) >= Decimal("1.00")
    assert max(amounts) <= Decimal("1000.00")
    assert all(a == a.quantize(Decimal("0.01")) for a in amounts)
    share = sum(a > 900 for a in amounts) / len(amounts)
    assert 0.09 < share < 0.11


def test_ids_are_unique_and_accounts_differ() -> None:
    factory = TransactionFactory(seed=9)
    txs = [factory.next() for _ in range(10_000)]
    assert len({tx.id for tx in txs}) == len(txs)
    assert all(tx.source != tx.target for tx in txs)


def test_uuid4_text_is_what_the_uuid_module_writes() -> None:
    rng = random.Random(8)
    for bits in [0, (1 << 128) - 1, *(rng.getrandbits(128) for _ in range(5000))]:
        assert uuid4_text(bits) == str(uuid.UUID(int=bits, version=4))


def test_timestamps_are_utc_iso_with_milliseconds() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = utc_now_iso()
    after = datetime.now(UTC)
    assert len(stamp) == len("2026-11-29T14:52:29.123Z")
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= parsed <= after


def test_take_continues_the_same_stream() -> None:
    one_by_one = TransactionFactory(seed=3, clock=lambda: "t")
    in_rounds = TransactionFactory(seed=3, clock=lambda: "t")
    expected = [one_by_one.next() for _ in range(25)]
    assert in_rounds.take(10) + in_rounds.take(0) + in_rounds.take(15) == expected
