"""The transaction record and a reproducible source of random ones."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

CURRENCY = "EUR"
ACCOUNT_ID_LENGTH = 6
ACCOUNT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# A bounded pool of accounts so that keys repeat and per-account ordering means something.
ACCOUNT_POOL_SIZE = 1000
MIN_AMOUNT_CENTS = 100  # 1.00
MAX_AMOUNT_CENTS = 100_000  # 1000.00


@dataclass(frozen=True, slots=True)
class Transaction:
    """One payment. `id` and `timestamp` are optional: the tutorial's records had neither."""

    source: str
    target: str
    amount: Decimal
    currency: str = CURRENCY
    id: str | None = None
    timestamp: str | None = None


def utc_now_iso() -> str:
    """The current UTC time in ISO 8601 with milliseconds, e.g. 2026-11-29T14:52:29.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TransactionFactory:
    """Makes random transactions; the same seed gives the same ids, accounts and amounts.

    Amounts are whole cents drawn uniformly from 1.00 to 1000.00, so about 10% exceed 900.
    """

    def __init__(self, seed: int | None = None, clock: Callable[[], str] = utc_now_iso) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._accounts = [
            "".join(self._rng.choices(ACCOUNT_ALPHABET, k=ACCOUNT_ID_LENGTH))
            for _ in range(ACCOUNT_POOL_SIZE)
        ]

    def next(self) -> Transaction:
        rng = self._rng
        source, target = rng.sample(self._accounts, 2)
        cents = rng.randint(MIN_AMOUNT_CENTS, MAX_AMOUNT_CENTS)
        return Transaction(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            source=source,
            target=target,
            amount=Decimal(cents).scaleb(-2),
            currency=CURRENCY,
            timestamp=self._clock(),
        )
