"""Realistic legit traffic with per-account habits, and labelled fraud scenarios injected into it.

Pure core: no Kafka. The generator turns each (transaction, label) into a record, the label (if
any) in the `sim.label` header, so a rule set can be measured against a ground truth.

Scenarios (one line each; the same table is in docs/scenarios.md):

| name               | pattern                                                                 |
|--------------------|-------------------------------------------------------------------------|
| `card_testing`     | 5-10 tiny amounts (0.50-2.00) from one account, each to a different target |
| `account_takeover` | 3-6 amounts 5-20x the account's typical amount, to targets it never uses |
| `velocity_burst`   | 6-12 habitual payments from one account to its usual targets, back to back |
| `big_ticket`       | one amount above 900.00 (900.01-5000.00)                                |

Timing: an instance's records are emitted back to back in the stream (a new instance may cut in,
and its records go first, then the older one resumes),
so at any rate of at least ~10 records/s they carry timestamps and Kafka record times within a
second or so of each other; the detector's windows see a burst without the source having to fake
clocks. `share` is the chance that a record starts an instance, so the share of records that start
one is the configured share; the records an instance adds after its first are extra labelled ones.

Legit traffic: each account gets a typical amount (log-normal, median 30.00), an activity weight
(log-normal, median 1) and three usual targets. A payment goes to a usual target 80% of the time,
with an amount log-normal around the typical one, so legit amounts above 900.00 are very rare.
An account sends about rate x weight / ACCOUNT_POOL_SIZE records per second. A count rule of
"more than 3 in 10 s" counts, at each record, its account's others in the window: for it to stay
quiet on legit traffic keep that rate near 0.01/s, i.e. a pool of about 100 x the rate (100,000
accounts at 1000 records/s); at the default 1000 accounts legit accounts repeat every second or so.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from itertools import accumulate
from typing import Literal

from fraudcore.core.model import (
    CURRENCY,
    DEFAULT_ACCOUNT_POOL_SIZE,
    MAX_AMOUNT_CENTS,
    MIN_AMOUNT_CENTS,
    Transaction,
    check_account_pool_size,
    draw_accounts,
    utc_now_iso,
    uuid4_text,
)

log = logging.getLogger(__name__)

Profile = Literal["uniform", "realistic"]
PROFILES: tuple[str, ...] = ("uniform", "realistic")

# The Kafka header that carries the ground truth; only the generator writes it.
LABEL_HEADER = "sim.label"

SCENARIOS: dict[str, str] = {
    "card_testing": "5-10 tiny amounts (0.50-2.00) from one account, each to a different target",
    "account_takeover": "3-6 amounts 5-20x the account's typical amount, to targets it never uses",
    "velocity_burst": "6-12 habitual payments from one account to its usual targets, back to back",
    "big_ticket": "one amount above 900.00 (900.01-5000.00)",
}

TYPICAL_MEDIAN_CENTS = 3000  # 30.00
TYPICAL_SIGMA = 0.8  # spread of typical amounts between accounts
AMOUNT_SIGMA = 0.3  # spread of one account's amounts around its typical one: habits are steady
WEIGHT_SIGMA = 0.5  # spread of activity between accounts
USUAL_TARGETS = 3
USUAL_TARGET_SHARE = 0.8
BIG_TICKET_CENTS = (90_001, 500_000)
CARD_TESTING_CENTS = (50, 200)
# Instance records waiting to be emitted, at most: with shares summing close to 1 new instances
# would otherwise pile up faster than they drain. Past it, a record drains instead of starting.
MAX_PENDING = 10_000


def parse_scenarios(text: str) -> dict[str, float]:
    """`name:share,...` as {name: share}; ValueError naming what is wrong."""
    shares: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, share_text = item.partition(":")
        name = name.strip()
        if name not in SCENARIOS:
            known = ", ".join(SCENARIOS)
            raise ValueError(f"unknown scenario {name!r} (known: {known})")
        if not sep:
            raise ValueError(f"scenario {name} has no share (write {name}:0.01)")
        try:
            share = float(share_text)
        except ValueError:
            raise ValueError(f"scenario {name} has share {share_text!r}, not a number") from None
        if not math.isfinite(share) or share < 0:
            raise ValueError(f"scenario {name} has share {share_text.strip()}, below 0")
        if name in shares:
            raise ValueError(f"scenario {name} is listed twice")
        shares[name] = share
    total = sum(shares.values())
    if total > 1:
        raise ValueError(f"scenario shares sum to {total:g}, past 1")
    return shares


Labelled = tuple[Transaction, str | None]


class RealisticSource:
    """Legit payments following per-account habits, with labelled scenario instances mixed in.

    The same seed gives the same pool, habits, records and labels.
    """

    def __init__(
        self,
        seed: int | None = None,
        clock: Callable[[], str] = utc_now_iso,
        account_pool_size: int = DEFAULT_ACCOUNT_POOL_SIZE,
        scenarios: Mapping[str, float] | None = None,
    ) -> None:
        check_account_pool_size(account_pool_size)
        rng = self._rng = random.Random(seed)
        self._clock = clock
        self._accounts = draw_accounts(rng, account_pool_size)
        size = len(self._accounts)
        self._typical = [
            TYPICAL_MEDIAN_CENTS * rng.lognormvariate(0.0, TYPICAL_SIGMA) for _ in range(size)
        ]
        self._cum_weights = list(
            accumulate(rng.lognormvariate(0.0, WEIGHT_SIGMA) for _ in range(size))
        )
        self._usual = [self._usual_targets(index) for index in range(size)]
        self._scenarios = [(name, share) for name, share in (scenarios or {}).items() if share > 0]
        self._cum_shares = list(accumulate(share for _, share in self._scenarios))
        self._pending: deque[Labelled] = deque()
        self._makers: dict[str, Callable[[int], list[Labelled]]] = {
            "card_testing": self._card_testing,
            "account_takeover": self._account_takeover,
            "velocity_burst": self._velocity_burst,
            "big_ticket": self._big_ticket,
        }

    @property
    def accounts(self) -> tuple[str, ...]:
        return tuple(self._accounts)

    @property
    def scenario_names(self) -> tuple[str, ...]:
        """The scenarios this source injects (share above 0)."""
        return tuple(name for name, _ in self._scenarios)

    def typical_amount(self, account: str) -> Decimal:
        """The account's habitual amount, for tests and for explaining a record."""
        return _cents(self._typical[self._accounts.index(account)])

    def usual_targets(self, account: str) -> tuple[str, ...]:
        return tuple(self._accounts[i] for i in self._usual[self._accounts.index(account)])

    def _usual_targets(self, index: int) -> list[int]:
        size = len(self._accounts)
        count = min(USUAL_TARGETS, size - 1)
        others = self._rng.sample(range(size - 1), count)
        return [other + (other >= index) for other in others]

    def _other(self, index: int, exclude: list[int] | tuple[int, ...] = ()) -> int:
        """A random account other than `index` (and, when the pool allows, not in `exclude`)."""
        size = len(self._accounts)
        for _ in range(20):
            other = int(self._rng.random() * (size - 1))
            other += other >= index
            if other not in exclude:
                return other
        return other

    def _transaction(self, source: int, target: int, cents: float) -> Transaction:
        accounts = self._accounts
        return Transaction(
            accounts[source],
            accounts[target],
            _cents(cents),
            CURRENCY,
            uuid4_text(self._rng.getrandbits(128)),
            self._clock(),
        )

    def _source(self) -> int:
        return self._rng.choices(range(len(self._accounts)), cum_weights=self._cum_weights)[0]

    def _habitual(self, source: int) -> Transaction:
        rng = self._rng
        if rng.random() < USUAL_TARGET_SHARE:
            target = rng.choice(self._usual[source])
        else:
            target = self._other(source)
        cents = self._typical[source] * rng.lognormvariate(0.0, AMOUNT_SIGMA)
        return self._transaction(
            source, target, min(max(cents, MIN_AMOUNT_CENTS), MAX_AMOUNT_CENTS)
        )

    def _card_testing(self, source: int) -> list[Labelled]:
        rng = self._rng
        targets: list[int] = []
        for _ in range(rng.randint(5, 10)):
            targets.append(self._other(source, targets))
        return [
            (self._transaction(source, t, rng.randint(*CARD_TESTING_CENTS)), "card_testing")
            for t in targets
        ]

    def _account_takeover(self, source: int) -> list[Labelled]:
        rng = self._rng
        avoid = list(self._usual[source])
        records: list[Labelled] = []
        for _ in range(rng.randint(3, 6)):
            target = self._other(source, avoid)
            avoid.append(target)
            cents = self._typical[source] * rng.uniform(5.0, 20.0)
            records.append((self._transaction(source, target, cents), "account_takeover"))
        return records

    def _velocity_burst(self, source: int) -> list[Labelled]:
        count = self._rng.randint(6, 12)
        return [(self._habitual(source), "velocity_burst") for _ in range(count)]

    def _big_ticket(self, source: int) -> list[Labelled]:
        target = self._rng.choice(self._usual[source])
        cents = self._rng.randint(*BIG_TICKET_CENTS)
        return [(self._transaction(source, target, cents), "big_ticket")]

    def next(self) -> Labelled:
        """The next record and its label (None for legit traffic)."""
        pending = self._pending
        if self._cum_shares and len(pending) < MAX_PENDING:
            draw = self._rng.random()
            for (name, _), bound in zip(self._scenarios, self._cum_shares, strict=True):
                if draw < bound:
                    first, *rest = self._makers[name](self._source())
                    pending.extendleft(reversed(rest))  # its rest first: it stays tight
                    return first
        if pending:
            return pending.popleft()
        return self._habitual(self._source()), None

    def take(self, count: int) -> list[Labelled]:
        """The next `count` records with their labels."""
        make = self.next
        return [make() for _ in range(count)]


def _cents(cents: float) -> Decimal:
    return Decimal(round(cents)).scaleb(-2)
