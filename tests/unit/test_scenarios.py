"""GENERATOR_PROFILE and FRAUD_SCENARIOS: habits, each scenario's pattern, its label, its share,
and settings that cannot work refused in one line."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from itertools import groupby
from pathlib import Path

import pytest

from detector.config import DetectorSettings
from detector.routing import Router
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.rule import Verdict
from fraudcore.core.scenarios import (
    LABEL_HEADER,
    SCENARIOS,
    Labelled,
    RealisticSource,
    parse_scenarios,
)
from fraudcore.core.topics import FRAUD_TOPIC, LEGIT_TOPIC
from fraudcore.kafka.types import Record
from fraudcore.runtime import StopFlag
from generator import app
from generator.config import GeneratorSettings
from tests.fakes import FakeProducer
from tests.kafka_helpers import run_command

ROOT = Path(__file__).resolve().parents[2]
ALL = {"card_testing": 0.01, "account_takeover": 0.01, "velocity_burst": 0.01, "big_ticket": 0.01}


def instances(records: list[Labelled], name: str) -> list[list[Labelled]]:
    """The runs of consecutive records labelled `name` from one source: one per instance, as
    long as no other instance cut in (rare at small shares; tests allow for it)."""
    runs: list[list[Labelled]] = []
    for (label, _source), run in groupby(records, key=lambda r: (r[1], r[0].source)):
        if label == name:
            runs.append(list(run))
    return runs


@pytest.fixture(scope="module")
def sample() -> tuple[RealisticSource, list[Labelled]]:
    """Every scenario, at shares small enough that an instance is rarely cut by another."""
    source = RealisticSource(7, lambda: "t", scenarios=dict.fromkeys(SCENARIOS, 0.002))
    return source, source.take(100_000)


def test_legit_traffic_follows_habits(sample: tuple[RealisticSource, list[Labelled]]) -> None:
    source, records = sample
    legit = [tx for tx, label in records if label is None]
    amounts = sorted(tx.amount for tx in legit)
    assert Decimal("10") < amounts[len(amounts) // 2] < Decimal("60")  # median near 30.00
    assert sum(a > 900 for a in amounts) < len(amounts) * 0.001  # above the threshold: rare
    usual = sum(tx.target in source.usual_targets(tx.source) for tx in legit)
    assert 0.75 < usual / len(legit) < 0.85
    assert all(tx.source != tx.target for tx, _ in records)


def test_card_testing_is_a_burst_of_tiny_amounts_to_many_targets(
    sample: tuple[RealisticSource, list[Labelled]],
) -> None:
    runs = instances(sample[1], "card_testing")
    assert runs
    for run in runs:
        assert all(Decimal("0.50") <= tx.amount <= Decimal("2.00") for tx, _ in run)
        assert len({tx.target for tx, _ in run}) == len(run)
    assert Counter(5 <= len(run) <= 10 for run in runs)[True] >= 0.9 * len(runs)


def test_account_takeover_sends_far_above_habit_to_new_targets(
    sample: tuple[RealisticSource, list[Labelled]],
) -> None:
    source, records = sample
    runs = instances(records, "account_takeover")
    assert runs
    for run in runs:
        for tx, _ in run:
            typical = source.typical_amount(tx.source)
            assert typical * Decimal("4.9") <= tx.amount <= typical * Decimal("20.1")
            assert tx.target not in source.usual_targets(tx.source)
    assert Counter(3 <= len(run) <= 6 for run in runs)[True] >= 0.9 * len(runs)


def test_velocity_burst_is_many_payments_from_one_account_back_to_back(
    sample: tuple[RealisticSource, list[Labelled]],
) -> None:
    runs = instances(sample[1], "velocity_burst")
    assert runs
    assert Counter(6 <= len(run) <= 12 for run in runs)[True] >= 0.9 * len(runs)
    assert all(tx.amount <= 1000 for run in runs for tx, _ in run)  # habitual amounts


def test_big_ticket_is_one_amount_over_the_threshold(
    sample: tuple[RealisticSource, list[Labelled]],
) -> None:
    big = [tx for tx, label in sample[1] if label == "big_ticket"]
    assert big
    assert all(Decimal("900.01") <= tx.amount <= Decimal("5000.00") for tx in big)


def test_the_realized_start_shares_are_the_configured_ones() -> None:
    shares = {"card_testing": 0.02, "account_takeover": 0.005, "big_ticket": 0.01}
    source = RealisticSource(3, lambda: "t", scenarios=shares)
    count = 200_000
    records = source.take(count)
    labels = Counter(label for _, label in records)
    assert "velocity_burst" not in labels
    # big_ticket is one record per instance, so its records are its starts
    assert labels["big_ticket"] / count == pytest.approx(0.01, rel=0.1)
    # card_testing has 5-10 records, 7.5 on average, per start
    assert labels["card_testing"] / 7.5 / count == pytest.approx(0.02, rel=0.1)
    assert labels["account_takeover"] / 4.5 / count == pytest.approx(0.005, rel=0.15)


def test_no_scenarios_means_no_labels() -> None:
    assert {label for _, label in RealisticSource(1, lambda: "t").take(5000)} == {None}


def test_a_seed_gives_the_same_records_and_labels() -> None:
    first = RealisticSource(11, lambda: "t", account_pool_size=50, scenarios=ALL).take(3000)
    second = RealisticSource(11, lambda: "t", account_pool_size=50, scenarios=ALL).take(3000)
    other = RealisticSource(12, lambda: "t", account_pool_size=50, scenarios=ALL).take(3000)
    assert first == second
    assert first != other


def test_a_pool_of_two_still_works() -> None:
    records = RealisticSource(2, lambda: "t", account_pool_size=2, scenarios=ALL).take(2000)
    assert all(tx.source != tx.target for tx, _ in records)


# -- settings


def test_the_defaults_are_uniform_without_scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENERATOR_PROFILE", raising=False)
    monkeypatch.delenv("FRAUD_SCENARIOS", raising=False)
    settings = load_settings(GeneratorSettings)
    assert (settings.generator_profile, settings.scenario_shares) == ("uniform", {})


def test_scenarios_parse_with_spaces() -> None:
    assert parse_scenarios(" card_testing:0.01, big_ticket:0.005 ") == {
        "card_testing": 0.01,
        "big_ticket": 0.005,
    }
    assert parse_scenarios("card_testing:0.5,big_ticket:0.5") == {
        "card_testing": 0.5,
        "big_ticket": 0.5,
    }


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"FRAUD_SCENARIOS": "phishing:0.1"}, "unknown scenario 'phishing'"),
        ({"FRAUD_SCENARIOS": "card_testing:0.6,big_ticket:0.5"}, "sum to 1.1, past 1"),
        ({"FRAUD_SCENARIOS": "big_ticket:-0.1"}, "below 0"),
        ({"FRAUD_SCENARIOS": "big_ticket:lots"}, "not a number"),
        ({"FRAUD_SCENARIOS": "big_ticket"}, "has no share"),
        ({"FRAUD_SCENARIOS": "big_ticket:0.1", "GENERATOR_PROFILE": "uniform"}, "needs GENERATOR"),
        ({"GENERATOR_PROFILE": "chaotic"}, "GENERATOR_PROFILE='chaotic'"),
    ],
)
def test_bad_scenario_settings_exit_2_with_one_line(env: dict[str, str], says: str) -> None:
    env = {"GENERATOR_PROFILE": "realistic", **env, "PATH": ""}
    done = run_command([sys.executable, "-m", "generator"], env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("generator: invalid setting")
    assert says in lines[0]
    assert done.stdout == ""


def test_a_scenario_without_the_realistic_profile_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GENERATOR_PROFILE", raising=False)
    monkeypatch.setenv("FRAUD_SCENARIOS", "big_ticket:0.1")
    with pytest.raises(SettingsError, match="FRAUD_SCENARIOS needs GENERATOR_PROFILE=realistic"):
        load_settings(GeneratorSettings)


# -- the generator's loop


def run_generator(monkeypatch: pytest.MonkeyPatch, **settings: object) -> FakeProducer:
    monkeypatch.setattr(app, "freeze_startup_heap", lambda: None)  # not in the test process
    given = GeneratorSettings(transactions_per_second=1_000_000, random_seed=5, **settings)  # type: ignore[arg-type]
    producer = FakeProducer()
    assert app.Generator(given, producer, StopFlag()).run() == 0
    return producer


def test_the_label_header_is_exactly_on_injected_records(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = run_generator(
        monkeypatch,
        transactions_count=5000,
        generator_profile="realistic",
        fraud_scenarios="card_testing:0.01,account_takeover:0.01,velocity_burst:0.01,big_ticket:0.01",
    )
    expected = RealisticSource(5, lambda: "t", scenarios=ALL).take(5000)
    assert len(producer.written) == 5000
    for (_topic, key, value, headers), (tx, label) in zip(producer.written, expected, strict=True):
        decoded = json.loads(value or b"")
        assert (key, decoded["source"], decoded["amount"]) == (
            tx.source.encode(),
            tx.source,
            float(tx.amount),
        )
        assert set(decoded) == {"id", "source", "target", "amount", "currency", "timestamp"}
        if label is None:
            assert headers is None
        else:
            assert list(headers or []) == [(LABEL_HEADER, label.encode())]
    assert {label for _, label in expected} == {None, *SCENARIOS}


def test_the_uniform_profile_sends_no_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = run_generator(monkeypatch, transactions_count=500)
    assert all(headers is None for *_, headers in producer.written)


# -- the detector never reads the label


def test_no_live_detector_module_names_the_label_header() -> None:
    """The label is ground truth for measuring rules; a detector that read it would cheat. Only
    the scenario core names it (and a replay that measures rules against it, if any)."""
    offenders = [
        path
        for package in ("detector", "fraudcore")
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "fraudcore/core/scenarios.py"
        and "backtest" not in path.name
        and any(word in path.read_text() for word in ("sim.label", "LABEL_HEADER", "scenarios"))
    ]
    assert offenders == []


class Quiet:
    """A tally that keeps nothing."""

    def routed(
        self, verdict: Verdict, timestamp_ms: int | None, reason: str = "", rules: bytes = b""
    ) -> None:
        pass


def test_the_detector_routes_the_same_with_or_without_the_label_and_copies_it() -> None:
    settings = DetectorSettings(rules_file=ROOT / "rules/example.yaml")
    labelled = RealisticSource(9, account_pool_size=20, scenarios=ALL).take(3000)
    records = [
        Record(
            "transactions",
            0,
            offset,
            1_000_000 + offset * 5,  # 200 records/s
            encode_key(tx),
            encode(tx),
            [] if label is None else [(LABEL_HEADER, label.encode())],
        )
        for offset, (tx, label) in enumerate(labelled)
    ]
    bare = [replace(record, headers=[]) for record in records]
    router = Router(settings)
    with_label = router.outputs(records, Quiet(), settings.rule_set.partition())
    without = router.outputs(bare, Quiet(), settings.rule_set.partition())
    assert [out[:3] for out in with_label] == [out[:3] for out in without]
    assert {LEGIT_TOPIC, FRAUD_TOPIC} <= {out[0] for out in without}  # both routes taken
    for (_topic, _key, _value, headers), (_tx, label) in zip(with_label, labelled, strict=True):
        found = [value for name, value in headers or [] if name == LABEL_HEADER]
        assert found == ([] if label is None else [label.encode()])
