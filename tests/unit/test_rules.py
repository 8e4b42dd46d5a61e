"""The rule types at their edges, and the rules file's refusals."""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.codec import encode
from fraudcore.core.model import Transaction
from fraudcore.core.rules import AmountSpike, SumInWindow
from fraudcore.core.rules.base import ChangelogState
from fraudcore.core.rules.file import RulesFileError, load_rules
from fraudcore.core.rules.ruleset import RuleSet
from tests.kafka_helpers import run_command

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rules" / "example.yaml"
T0 = 1_800_000_000_000
DAY = 86_400_000


def spike(**settings: object) -> ChangelogState:
    rule = AmountSpike.model_validate({"name": "spike", "type": "amount_spike", **settings})
    return rule.new_state()


def feed(state: ChangelogState, amounts: list[str], account: str = "A", t: int = T0) -> list[bool]:
    return [state.fires(account, Decimal(a), t + i, i, t + i) for i, a in enumerate(amounts)]


# ------------------------------------------------------------------------------ amount_spike
# 10, 20, 10, 20: mean 15, sigma 5; at z = 2 the bound is 25.


def test_exactly_z_sigma_above_the_mean_does_not_fire() -> None:
    state = spike(history=4, min_history=4, z=2)
    assert feed(state, ["10", "20", "10", "20", "25.00"]) == [False] * 5


def test_one_cent_above_z_sigma_fires() -> None:
    state = spike(history=4, min_history=4, z=2)
    assert feed(state, ["10", "20", "10", "20", "25.01"]) == [False] * 4 + [True]


def test_a_fractional_z_compares_exactly() -> None:
    state = spike(history=4, min_history=4, z="1.5")  # bound 22.5
    assert feed(state, ["10", "20", "10", "20", "22.50"])[-1] is False
    state = spike(history=4, min_history=4, z="1.5")
    assert feed(state, ["10", "20", "10", "20", "22.51"])[-1] is True


def test_min_history_minus_one_never_fires() -> None:
    state = spike(history=4, min_history=4, z=2)
    assert feed(state, ["10", "20", "10", "99999"]) == [False] * 4


def test_zero_variance_fires_on_any_amount_above_the_mean() -> None:
    state = spike(history=3, min_history=3, z=4)
    assert feed(state, ["10", "10", "10", "10.00", "10.01"]) == [False] * 4 + [True]


def test_only_the_last_history_amounts_count() -> None:
    state = spike(history=3, min_history=3, z=1)
    # the 1000 falls out of the history: the last three are 10s, so 10.01 fires
    assert feed(state, ["1000", "10", "10", "10", "10.01"])[-1] is True


def test_an_account_that_idled_out_starts_afresh_with_a_tombstone() -> None:
    state = spike(history=3, min_history=3, z=1, idle_days=1)
    assert feed(state, ["10", "10", "10"]) == [False] * 3
    assert [account for account, _ in state.changes()] == ["A"]
    # B moves the stream time more than a day past A's last transaction: A is dropped
    later = T0 + 2 + DAY + 1
    assert state.fires("B", Decimal(5), later, 3, later) is False
    assert state.changes() == [("B", f"{later} 0 5".encode()), ("A", None)]
    assert len(state) == 1
    # A comes back: no history, so even a huge amount does not fire
    assert state.fires("A", Decimal(99999), later + 1, 4, later + 1) is False


def test_exactly_idle_days_is_not_idle() -> None:
    state = spike(history=3, min_history=3, z=1, idle_days=1)
    feed(state, ["10", "10", "10"])
    at = T0 + 2 + DAY  # exactly one day after A's last transaction
    assert state.fires("A", Decimal("10.01"), at, 3, at) is True


def test_a_tombstone_drops_an_account_on_restore() -> None:
    state = spike(history=3, min_history=3, z=1)
    feed(state, ["10", "10", "10"])
    restored = spike(history=3, min_history=3, z=1)
    for account, value in state.changes():
        restored.load(account, value)
    assert len(restored) == 1
    restored.load("A", None)
    assert len(restored) == 0
    assert feed(restored, ["10.01"], t=T0 + 10) == [False]  # no history left


# ------------------------------------------------------------------------------ sum_in_window


def sums(max_amount: str, seconds: float) -> SumInWindow:
    return SumInWindow(name="total", max_amount=Decimal(max_amount), window_seconds=seconds)


def test_a_transaction_exactly_w_earlier_is_not_summed() -> None:
    state = sums("100", 10).new_state()
    assert state.fires("A", Decimal(60), T0, 0, T0) is False
    assert state.fires("A", Decimal(60), T0 + 10_000, 1, T0 + 10_000) is False
    assert state.fires("A", Decimal("40.01"), T0 + 19_999, 2, T0 + 19_999) is True


def test_the_sum_is_compared_exactly() -> None:
    state = sums("100", 10).new_state()
    assert state.fires("A", Decimal("33.33"), T0, 0, T0) is False
    assert state.fires("A", Decimal("33.33"), T0 + 1, 1, T0 + 1) is False
    assert state.fires("A", Decimal("33.34"), T0 + 2, 2, T0 + 2) is False  # exactly 100
    assert state.fires("A", Decimal("0.01"), T0 + 3, 3, T0 + 3) is True


def test_out_of_order_stamps_past_the_horizon_are_not_summed() -> None:
    """W = 10 s: once the stream time is S, nothing at or before S - 2W counts, even a late
    record whose own window would reach it."""
    state = sums("100", 10).new_state()
    assert state.fires("A", Decimal(90), T0, 0, T0) is False
    assert state.fires("B", Decimal(1), T0 + 25_000, 1, T0 + 25_000) is False  # S - 2W = T0+5s
    # t = T0 + 6 s: (t - W, t] holds T0, but T0 is before S - 2W
    assert state.fires("A", Decimal(20), T0 + 6_000, 2, T0 + 25_000) is False
    # a late one within the horizon still counts the held late record
    assert state.fires("A", Decimal("80.01"), T0 + 7_000, 3, T0 + 25_000) is True


# ------------------------------------------------------------------------------ the rules file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


REFUSALS = [
    ("rules:\n  - {name: a, type: amount_over, threshold: 1}", "rule #1 (a): field type: unknown"),
    ("rules:\n  - {name: a, type: amount_above}", "rule #1 (a): field threshold: missing"),
    (
        "rules:\n  - {name: a, type: amount_above, threshold: 1, limit: 2}",
        "rule #1 (a): field limit: not a setting of amount_above",
    ),
    ("rules:\n  - {name: a, type: amount_above, threshold: -1}", "rule #1 (a): field threshold:"),
    (
        "rules:\n  - {name: s, type: amount_spike, history: 20, min_history: 5, z: 0}",
        "rule #1 (s): field z:",
    ),
    (
        "rules:\n  - {name: s, type: amount_spike, history: 2, min_history: 5, z: 1}",
        "rule #1 (s): field min_history: must be at most history",
    ),
    (
        "rules:\n  - {name: r, type: amount_out_of_range, history: 5, min_history: 1, factor: 1}",
        "rule #1 (r): field factor: Input should be greater than 1",
    ),
    (
        "rules:\n  - {name: r, type: amount_out_of_range, history: 1, min_history: 2, factor: 3}",
        "rule #1 (r): field min_history: must be at most history",
    ),
    (
        "rules:\n  - {name: d, type: sum_in_window, max_amount: 1, window_seconds: 0}",
        "rule #1 (d): field window_seconds:",
    ),
    (
        "rules:\n  - {name: a, type: amount_above, threshold: 1}\n"
        "  - {name: a, type: count_in_window, max_transactions: 1, window_seconds: 1}",
        "rule #2 (a): field name: duplicate name 'a'",
    ),
    ("rules:\n  - {name: 'a,b', type: amount_above, threshold: 1}", "field name:"),
    ("rules: []", "`rules` is empty"),
    ("rules: [", "not valid YAML at line 1"),
    ("limits: []", "expected a mapping with a `rules:` list"),
]


@pytest.mark.parametrize(("text", "message"), REFUSALS, ids=[m for _, m in REFUSALS])
def test_a_bad_rules_file_is_refused_in_one_line_naming_file_rule_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesFileError) as refused:
        load_rules(path)
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith(f"RULES_FILE {path}: ")
    assert message in line


def test_an_unreadable_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesFileError, match="cannot be read: No such file"):
        load_rules(tmp_path / "missing.yaml")


def test_the_example_rules_file_parses_in_order() -> None:
    rules = load_rules(EXAMPLE)
    assert rules.names == ("amount", "velocity", "habit")
    assert [rule.type for rule in rules.rules] == [
        "amount_above",
        "count_in_window",
        "amount_out_of_range",
    ]


def test_decimal_settings_are_read_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - {name: a, type: amount_above, threshold: 900.10}")
    (rule,) = load_rules(path).rules
    assert rule.threshold == Decimal("900.10")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "other",
    ["FRAUD_AMOUNT_THRESHOLD", "VELOCITY_MAX_TRANSACTIONS", "VELOCITY_WINDOW_SECONDS"],
)
def test_rules_file_with_another_source_of_rules_is_refused(
    monkeypatch: pytest.MonkeyPatch, other: str
) -> None:
    monkeypatch.setenv("RULES_FILE", str(EXAMPLE))
    monkeypatch.setenv(other, "3")
    with pytest.raises(SettingsError, match=f"RULES_FILE=.* and {other} are both set"):
        load_settings(DetectorSettings)


def test_the_detector_exits_2_with_one_line_for_a_bad_rules_file(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - {name: a, type: amount_above, threshold: 1, x: 1}")
    for env in (
        {"RULES_FILE": str(path)},
        {"RULES_FILE": str(EXAMPLE), "VELOCITY_WINDOW_SECONDS": "1"},
    ):
        done = run_command([sys.executable, "-m", "detector"], {**env, "PATH": ""}, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "RULES_FILE" in lines[0]


def test_without_a_rules_file_the_rules_are_amount_then_velocity() -> None:
    rules = RuleSet.from_settings(Decimal(900), 2, 1.0)
    assert rules.names == ("amount", "velocity")
    state = rules.partition()
    value = encode(Transaction("A", "B", Decimal("950.00")))
    got = [state.classify(value, T0 + i, i).rules for i in range(4)]
    assert got == [b"amount", b"amount", b"amount,velocity", b"amount,velocity"]


def test_compose_mounts_the_example_rules_file_where_rules_file_finds_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    detector = compose["services"]["detector"]
    assert "./rules:/app/rules:ro" in detector["volumes"]
    assert detector["environment"]["RULES_FILE"] == "${RULES_FILE:-}"
    # The image's working directory is /app: rules/example.yaml is the mounted example.
    assert load_rules(ROOT / "rules" / "example.yaml").names


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from("ABC"),
            st.one_of(st.integers(0, 4000), st.integers(-25_000, 3000)),
            st.sampled_from(["0.01", "10.00", "33.33", "33.34", "60.00"]),
        ),
        max_size=120,
    ),
    seconds=st.sampled_from([0.001, 1.0, 2.5, 10.0]),
)
def test_the_running_sum_is_the_window_summed_again(
    events: list[tuple[str, int, str]], seconds: float
) -> None:
    """The kept running total gives, at every transaction, the window's sum computed afresh
    (exactly, in or out of timestamp order, across the horizon), so the verdict at every
    limit is the plain definition's."""
    rule = sums("100", seconds)
    state = rule.new_state()
    window, span = math.ceil(seconds * 1000), math.ceil(2 * seconds * 1000)
    held: list[tuple[str, int, Decimal]] = []
    t, stream = T0, None
    for offset, (account, gap, text) in enumerate(events):
        t += gap
        stream = t if stream is None else max(stream, t)
        amount = Decimal(text)
        low = max(t - window, stream - span)
        total = amount + sum(
            (a for who, stamp, a in held if who == account and low < stamp <= t), Decimal(0)
        )
        assert state.fires(account, amount, t, offset, stream) is (total > rule.max_amount)
        if t > stream - span:
            held.append((account, t, amount))
