"""amount_out_of_range at its edges: exactly `factor` times the range does not fire, a cent
beyond does; the history it judges against; and its changelog, restored, judges the same."""

from __future__ import annotations

from decimal import Decimal

from fraudcore.core.rules import AmountOutOfRange
from fraudcore.core.rules.base import ChangelogState

T0 = 1_800_000_000_000
DAY = 86_400_000


def ranges(**settings: object) -> ChangelogState:
    rule = AmountOutOfRange.model_validate(
        {"name": "range", "type": "amount_out_of_range", **settings}
    )
    return rule.new_state()


def feed(state: ChangelogState, amounts: list[str], account: str = "A", t: int = T0) -> list[bool]:
    return [state.fires(account, Decimal(a), t + i, i, t + i) for i, a in enumerate(amounts)]


def test_exactly_factor_times_the_largest_does_not_fire_and_a_cent_more_does() -> None:
    assert feed(ranges(history=5, min_history=2, factor=4), ["10", "20", "80.00"])[-1] is False
    assert feed(ranges(history=5, min_history=2, factor=4), ["10", "20", "80.01"])[-1] is True


def test_exactly_the_smallest_over_factor_does_not_fire_and_a_cent_less_does() -> None:
    assert feed(ranges(history=5, min_history=2, factor=4), ["20", "10", "2.50"])[-1] is False
    assert feed(ranges(history=5, min_history=2, factor=4), ["20", "10", "2.49"])[-1] is True


def test_a_fractional_factor_compares_exactly() -> None:
    state = ranges(history=5, min_history=1, factor="2.5")
    assert feed(state, ["10.00", "25.00", "62.50", "156.26"]) == [False, False, False, True]


def test_amounts_with_more_decimals_rescale_the_history() -> None:
    state = ranges(history=5, min_history=1, factor=4)
    assert feed(state, ["10", "40.001"]) == [False, True]
    assert state.changes() == [("A", f"{T0 + 1} 3 10000 40001".encode())]


def test_fewer_than_min_history_amounts_never_fire() -> None:
    state = ranges(history=5, min_history=3, factor=2)
    assert feed(state, ["10", "99999", "0.01", "199998.01"]) == [False] * 3 + [True]


def test_only_the_last_history_amounts_count() -> None:
    state = ranges(history=2, min_history=2, factor=2)
    # the 1000 falls out of the history: the last two are 10s, so 20.01 fires
    assert feed(state, ["1000", "10", "10", "20.01"]) == [False, False, False, True]


def test_an_idle_account_starts_afresh() -> None:
    state = ranges(history=3, min_history=1, factor=2, idle_days=1)
    assert feed(state, ["10"]) == [False]
    later = T0 + DAY + 1
    assert state.fires("A", Decimal(99999), later, 1, later) is False


def test_the_changelog_restores_the_same_verdicts() -> None:
    """What changes() wrote, loaded into a fresh state (a restore), judges the next amounts as
    the state that wrote it does."""
    state = ranges(history=3, min_history=1, factor=3)
    feed(state, ["10", "12.50", "9", "30"], account="A")
    feed(state, ["100", "101"], account="B", t=T0 + 10)
    restored = ranges(history=3, min_history=1, factor=3)
    for account, value in state.changes():
        restored.load(account, value)
    assert len(restored) == len(state) == 2
    after = ["90.01", "2.99", "3", "300"]
    for account in ("A", "B"):
        t = T0 + 100
        assert feed(restored, after, account, t) == feed(state, after, account, t)
    assert restored.changes() == state.changes()
