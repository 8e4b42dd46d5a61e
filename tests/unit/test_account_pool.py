"""ACCOUNT_POOL_SIZE: the generator's accounts, distinct, as many as asked, and by default the
very records the generator made before the pool size could be set."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from decimal import Decimal

import pytest

from fraudcore.config import SettingsError, load_settings
from fraudcore.core.model import (
    ACCOUNT_ALPHABET,
    ACCOUNT_ID_LENGTH,
    DEFAULT_ACCOUNT_POOL_SIZE,
    MAX_ACCOUNT_POOL_SIZE,
    Transaction,
    TransactionFactory,
)
from fraudcore.runtime import StopFlag
from generator import app
from generator.config import GeneratorSettings
from tests.fakes import FakeProducer
from tests.kafka_helpers import run_command

# Computed with the code of 3e07a2d, before the pool size was a setting: for each seed, the
# sha256 of the comma-joined pool and of the repr of the first 2000 records (clock "t"), one
# repr(tuple(tx)) after the other.
GOLDEN = {
    0: (
        "389a9a680e940f0708a51f715537963821067374c9a7addcfd6b4d5f143bcf17",
        "9a71d002c9e33ae53e211152bcbc963a87c90b48a4e4dd20c719cb179226b515",
    ),
    42: (
        "b1727549dad0dcf6d474e61b85eefc07b31be2d2f53d8128c58582d1ed0a5845",
        "253d164102abc52990747452d1d6536b29cbf2f097a348619fd0e8f17d063d83",
    ),
    12345: (
        "c045694ac1f00057f93c12655ff724b1fa1eba7092f3d0aee2ffbc65b6afd6f8",
        "0af6c7bbb16d911424c156808e51caf80ceaa26aa3f72d7b5a1e9fa1258326a2",
    ),
}
GOLDEN_COUNT = 2000
# The first two records of seed 42 in full, from the same code, so a failure is readable.
SEED_42_FIRST = [
    Transaction(
        "8LA100", "F1HX6Z", Decimal("356.63"), "EUR", "a391ffdb-8794-4c7e-8aaa-7f994a34041e", "t"
    ),
    Transaction(
        "VBGR8W", "RC6ZS6", Decimal("766.68"), "EUR", "99487f82-1831-4802-83c2-aee62ee94ed9", "t"
    ),
]


def raw_draws(seed: int, count: int) -> list[str]:
    """The ids the pool is drawn from, repeats kept: what the old code used as its pool."""
    rng = random.Random(seed)
    return ["".join(rng.choices(ACCOUNT_ALPHABET, k=ACCOUNT_ID_LENGTH)) for _ in range(count)]


def digests(factory: TransactionFactory) -> tuple[str, str]:
    pool = hashlib.sha256(",".join(factory.accounts).encode()).hexdigest()
    records = hashlib.sha256()
    for tx in factory.take(GOLDEN_COUNT):
        records.update(repr(tuple(tx)).encode())
    return pool, records.hexdigest()


@pytest.mark.parametrize("seed", sorted(GOLDEN))
def test_the_default_pool_gives_the_records_of_before(seed: int) -> None:
    assert digests(TransactionFactory(seed, clock=lambda: "t")) == GOLDEN[seed]
    explicit = TransactionFactory(seed, lambda: "t", account_pool_size=DEFAULT_ACCOUNT_POOL_SIZE)
    assert digests(explicit) == GOLDEN[seed]


def test_the_first_records_of_seed_42_are_the_ones_of_before() -> None:
    assert TransactionFactory(42, clock=lambda: "t").take(2) == SEED_42_FIRST


def test_a_repeated_id_is_skipped() -> None:
    """Seed 70 draws one id twice among its first 1000: the old pool had 999 accounts, one of
    them twice (a transaction could go from an account to itself). Now it has 1000."""
    draws = raw_draws(70, DEFAULT_ACCOUNT_POOL_SIZE)
    assert len(set(draws)) == DEFAULT_ACCOUNT_POOL_SIZE - 1
    accounts = TransactionFactory(70).accounts
    assert len(set(accounts)) == len(accounts) == DEFAULT_ACCOUNT_POOL_SIZE
    # the repeat skipped, one more id drawn, the order kept
    assert list(accounts) == list(dict.fromkeys(raw_draws(70, DEFAULT_ACCOUNT_POOL_SIZE + 1)))


def test_a_pool_of_100_000_is_distinct_and_quick_to_draw() -> None:
    size = 100_000
    assert len(set(raw_draws(1, size))) < size  # the raw draws repeat at this size
    started = time.perf_counter()
    factory = TransactionFactory(1, account_pool_size=size)
    elapsed = time.perf_counter() - started
    assert len(set(factory.accounts)) == len(factory.accounts) == size
    assert elapsed < 2.0  # about 0.2 s; generous for a slow CI machine
    assert all(len(a) == ACCOUNT_ID_LENGTH for a in factory.accounts)


def test_a_small_pool_repeats_its_accounts_and_never_pairs_one_with_itself() -> None:
    factory = TransactionFactory(7, account_pool_size=5)
    txs = factory.take(2000)
    assert {tx.source for tx in txs} == {tx.target for tx in txs} == set(factory.accounts)
    assert all(tx.source != tx.target for tx in txs)


def test_a_pool_of_two_pairs_its_accounts_both_ways() -> None:
    factory = TransactionFactory(3, account_pool_size=2)
    a, b = factory.accounts
    assert {(tx.source, tx.target) for tx in factory.take(200)} == {(a, b), (b, a)}


def test_the_same_seed_and_size_give_the_same_stream() -> None:
    first = TransactionFactory(11, lambda: "t", account_pool_size=50)
    second = TransactionFactory(11, lambda: "t", account_pool_size=50)
    assert first.take(300) == second.take(300)


@pytest.mark.parametrize("size", [-1, 0, 1, MAX_ACCOUNT_POOL_SIZE + 1])
def test_the_factory_refuses_a_pool_it_cannot_draw_from(size: int) -> None:
    with pytest.raises(ValueError, match="account pool needs 2 to 1,000,000 accounts"):
        TransactionFactory(1, account_pool_size=size)


# -- the setting


def test_account_pool_size_defaults_to_1000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCOUNT_POOL_SIZE", raising=False)
    assert load_settings(GeneratorSettings).account_pool_size == DEFAULT_ACCOUNT_POOL_SIZE == 1000
    monkeypatch.setenv("ACCOUNT_POOL_SIZE", "")  # empty means unset, as for every setting
    assert load_settings(GeneratorSettings).account_pool_size == 1000


@pytest.mark.parametrize("value", ["2", "50", "100000", str(MAX_ACCOUNT_POOL_SIZE)])
def test_account_pool_size_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ACCOUNT_POOL_SIZE", value)
    assert load_settings(GeneratorSettings).account_pool_size == int(value)


@pytest.mark.parametrize("value", ["1", "0", "-5", "junk", "2.5", str(MAX_ACCOUNT_POOL_SIZE + 1)])
def test_a_bad_account_pool_size_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ACCOUNT_POOL_SIZE", value)
    with pytest.raises(SettingsError) as caught:
        load_settings(GeneratorSettings)
    message = str(caught.value)
    assert f"ACCOUNT_POOL_SIZE={value!r}" in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["1", "junk"])
def test_the_generator_exits_non_zero_with_one_line(value: str) -> None:
    done = run_command(
        [sys.executable, "-m", "generator"], {"ACCOUNT_POOL_SIZE": value, "PATH": ""}
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"generator: invalid setting ACCOUNT_POOL_SIZE={value!r}")
    assert done.stdout == ""


# -- the generator's loop uses it


class RecordingProducer(FakeProducer):
    """The fake port's producer, every sent record's key and value kept."""

    @property
    def records(self) -> list[tuple[bytes, bytes]]:
        return [(key or b"", value or b"") for _topic, key, value, _headers in self.written]


def test_the_generator_draws_from_a_pool_of_account_pool_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "freeze_startup_heap", lambda: None)  # not in the test process
    settings = GeneratorSettings(
        account_pool_size=3,
        transactions_count=300,
        transactions_per_second=1_000_000,
        random_seed=5,
    )
    producer = RecordingProducer()
    assert app.Generator(settings, producer, StopFlag()).run() == 0
    values = [json.loads(value) for _, value in producer.records]
    assert len(values) == 300
    accounts = {v["source"] for v in values} | {v["target"] for v in values}
    assert accounts == set(TransactionFactory(5, account_pool_size=3).accounts)
    assert {key.decode() for key, _ in producer.records} <= accounts  # keyed by source
