"""The velocity rule: its window at the edges, its restore, and the detector against the audit's
reference implementation (detector/reference.py) on random interleavings."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import DetectorSettings
from detector.reference import Expected, ReferenceRules
from detector.routing import Router
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES, encode
from fraudcore.core.model import Transaction
from fraudcore.core.rule import HEADER_RULES, Verdict
from fraudcore.core.rules.ruleset import PartitionRules, RuleSet
from fraudcore.core.velocity import PartitionWindow, VelocityRule, WindowCheckpoint
from fraudcore.kafka.types import ConsumedRecord, Output

W = 10.0  # seconds
W_MS = 10_000
T0 = 1_800_000_000_000


def tx(source: str, amount: str = "10.00") -> bytes:
    return encode(Transaction(source, "ZZZZZZ", Decimal(amount)))


def fires(window: PartitionWindow, stamps: list[int], account: str = "A") -> list[bool]:
    return [window.fires(account, t, offset) for offset, t in enumerate(stamps)]


def test_a_transaction_exactly_w_earlier_is_not_counted() -> None:
    window = PartitionWindow(VelocityRule(1, W))
    assert fires(window, [T0, T0 + W_MS]) == [False, False]


def test_a_transaction_w_minus_one_ms_earlier_is_counted() -> None:
    window = PartitionWindow(VelocityRule(1, W))
    assert fires(window, [T0, T0 + W_MS - 1]) == [False, True]


def test_a_window_of_a_fraction_of_a_millisecond_compares_like_the_reals() -> None:
    """W = 1.5 ms: 1 ms earlier is inside (t - 1.5, t], 2 ms earlier is not."""
    window = PartitionWindow(VelocityRule(1, 0.0015))
    assert fires(window, [T0, T0 + 1, T0 + 3, T0 + 5]) == [False, True, False, False]


def test_n_equal_one_fires_on_the_second_within_the_window() -> None:
    window = PartitionWindow(VelocityRule(1, W))
    assert fires(window, [T0, T0 + 1, T0 + 2, T0 + 3 * W_MS]) == [False, True, True, False]


def test_the_count_is_over_n_not_at_n() -> None:
    window = PartitionWindow(VelocityRule(3, W))
    assert fires(window, [T0, T0 + 1, T0 + 2, T0 + 3]) == [False, False, False, True]


def test_accounts_are_counted_apart() -> None:
    window = PartitionWindow(VelocityRule(1, W))
    assert window.fires("A", T0, 0) is False
    assert window.fires("B", T0, 1) is False
    assert window.fires("A", T0 + 1, 2) is True


def test_out_of_order_timestamps_count_by_timestamp_not_by_arrival() -> None:
    """(t - W, t] is about timestamps: an earlier record with a later timestamp is not in the
    window of a later record with an earlier one, one with an earlier timestamp is."""
    window = PartitionWindow(VelocityRule(1, W))
    assert window.fires("A", T0 + 5000, 0) is False
    assert window.fires("A", T0, 1) is False  # T0 + 5000 is after T0: not in (T0 - W, T0]
    assert window.fires("A", T0 + 6000, 2) is True  # both earlier ones are within W
    # 20 s later, a late one from before the first: what is in (t - W, t] counts.
    rule = VelocityRule(2, W)
    window = PartitionWindow(rule)
    stamps = [T0 + 9000, T0 + 1000, T0 + 2000]
    assert fires(window, stamps) == [False, False, False]  # 2000: 1000 counts, 9000 does not
    assert window.fires("A", T0 + 1500, 3) is False  # in (T0-8500, T0+1500]: only 1000
    assert window.fires("A", T0 + 2500, 4) is True  # 1000, 2000, 1500 and itself: 4 > 2


def test_a_record_less_than_w_behind_the_stream_time_gets_its_whole_window() -> None:
    """Kept back to S - 2W: a late record's window (t - W, t] may reach before S - W."""
    window = PartitionWindow(VelocityRule(1, W))
    assert window.fires("A", T0, 0) is False
    assert window.fires("B", T0 + 15_000, 1) is False  # S: T0 is before S - W, still kept
    assert window.fires("A", T0 + 6000, 2) is True  # 9 s late; T0 is in (T0 - 4 s, T0 + 6 s]


def test_a_record_more_than_w_behind_the_stream_time_counts_only_what_is_kept() -> None:
    """What lies before S - 2W is forgotten: the window of a very late record is cut there."""
    window = PartitionWindow(VelocityRule(1, W))
    assert window.fires("A", T0, 0) is False
    assert window.fires("B", T0 + 2 * W_MS + 1, 1) is False  # S moves on: T0 is forgotten
    assert window.fires("A", T0 + 1, 2) is False  # (T0 - W, T0 + 1] held T0, but it is gone
    assert window.accounts == 1  # only B; A's late record is too old to be held


def test_what_is_past_the_horizon_never_counts_even_while_it_is_still_held() -> None:
    """An older timestamp behind a newer one is forgotten only after it, but from the moment
    it lies before S - 2W it is not counted."""
    window = PartitionWindow(VelocityRule(1, W))
    assert window.fires("A", T0 + 15_000, 0) is False
    assert window.fires("A", T0, 1) is False  # held, behind T0 + 15 s
    assert window.fires("B", T0 + 2 * W_MS + 1, 2) is False  # S - 2W = T0 + 1: T0 is past it
    assert len(window) == 3  # T0 still held: T0 + 15 s in front of it is not past the horizon
    assert window.fires("A", T0 + 9000, 3) is False  # T0 is in (t - W, t] but before S - 2W


def test_invalid_records_of_a_hot_account_never_count() -> None:
    rules = ReferenceRules(rule_set(VelocityRule(2, W)), DEFAULT_MAX_VALUE_BYTES)
    router, routed = make_router(VelocityRule(2, W))
    values = [tx("HOT"), b"not json", b'{"source": "HOT"}', tx("HOT"), b"", tx("HOT")]
    records = [Rec(0, i, T0 + i, v) for i, v in enumerate(values)]
    outputs = router.outputs(records, rule_set(VelocityRule(2, W)).partition())
    topics = [topic for topic, *_ in outputs]
    assert topics == ["legit", "dlq", "dlq", "legit", "dlq", "fraud"]
    assert outputs[-1][3] == [(HEADER_RULES, b"velocity")]
    assert [rules.expected("in", 0, r.timestamp, r.value).verdict for r in records] == [
        Verdict.LEGIT,
        Verdict.INVALID,
        Verdict.INVALID,
        Verdict.LEGIT,
        Verdict.INVALID,
        Verdict.FRAUD,
    ]
    assert routed.count(Verdict.INVALID) == 3


def test_an_account_with_nothing_in_its_window_costs_nothing() -> None:
    window = PartitionWindow(VelocityRule(3, W))
    for n in range(1000):
        window.fires(f"ACC{n}", T0 + n, n)
    assert window.accounts == 1000
    window.fires("LAST", T0 + 1000 + 2 * W_MS, 1000)
    assert window.accounts == 1
    assert len(window) == 1


def test_memory_is_bounded_by_the_window_with_a_future_timestamp_in_front() -> None:
    """One far-future timestamp moves the stream time on: nothing older is held after it."""
    window = PartitionWindow(VelocityRule(3, W))
    window.fires("A", T0, 0)
    window.fires("FUTURE", T0 + 10**9, 1)
    for n in range(2, 1000):
        window.fires(f"ACC{n}", T0 + n, n)
    assert len(window) == 1


def test_checkpoint_text_round_trips_and_rejects_what_is_not_ours() -> None:
    for checkpoint in (WindowCheckpoint(42, 60_000.0), WindowCheckpoint(7, 0.1 * 3)):
        assert WindowCheckpoint.decode(checkpoint.encode()) == checkpoint
    for junk in (None, "", "velocity/1 x 1", "velocity/2 1 1", "other", "velocity/1 1 1 1"):
        assert WindowCheckpoint.decode(junk) is None


def test_rule_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_transactions"):
        VelocityRule(0, W)
    for seconds in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="window_seconds"):
            VelocityRule(1, seconds)


# --------------------------------------------------------------------------- against the audit


@dataclass
class Rec:
    """What the router reads of a consumed record."""

    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "in"
    headers: list[tuple[str, bytes]] | None = field(default_factory=list)


class Verdicts(list[Verdict]):
    """A tally (detector.routing.Tally) that keeps each record's verdict."""

    def routed(
        self, verdict: Verdict, timestamp_ms: int | None, reason: str = "", rules: bytes = b""
    ) -> None:
        self.append(verdict)


class TalliedRouter:
    """A Router whose records are told to one tally."""

    def __init__(self, router: Router, tally: Verdicts) -> None:
        self._router, self._tally = router, tally

    def outputs(
        self, records: Sequence[ConsumedRecord], rules: PartitionRules | None = None
    ) -> list[Output]:
        rules = rules if rules is not None else rule_set(None).partition()
        return self._router.outputs(records, self._tally, rules)


def rule_set(rule: VelocityRule | None) -> RuleSet:
    """The rules without a rules file: amount > 900, and velocity when `rule` is given."""
    if rule is None:
        return RuleSet.from_settings(Decimal(900))
    return RuleSet.from_settings(Decimal(900), rule.max_transactions, rule.window_seconds)


def replay(rule: VelocityRule, records: Sequence[Rec]) -> PartitionRules:
    """The rules' state rebuilt from `records` (a checkpoint's replay_from up to the commit)."""
    rules = rule_set(rule).partition()
    rules.replay((r.value, r.timestamp, r.offset) for r in records)
    return rules


def make_router(rule: VelocityRule | None) -> tuple[TalliedRouter, list[Verdict]]:
    env: dict[str, object] = {
        "legit_topic": "legit",
        "fraud_topic": "fraud",
        "dead_letter_topic": "dlq",
    }
    if rule is not None:
        env["velocity_max_transactions"] = rule.max_transactions
        env["velocity_window_seconds"] = rule.window_seconds
    routed = Verdicts()
    router = Router(DetectorSettings(**env))  # type: ignore[arg-type]
    return TalliedRouter(router, routed), routed


def as_expected(output: tuple[str, object, object, object]) -> Expected:
    topic, _key, _value, headers = output
    verdict = {"legit": Verdict.LEGIT, "fraud": Verdict.FRAUD, "dlq": Verdict.INVALID}[topic]
    rules = [v for name, v in headers or () if name == HEADER_RULES]  # type: ignore[attr-defined]
    assert len(rules) == (verdict is Verdict.FRAUD)
    return Expected(verdict, rules[0] if rules else b"")


ACCOUNTS = ("AAAAAA", "BBBBBB", "CCCCCC")
event = st.tuples(
    st.sampled_from(ACCOUNTS),
    # ms after the previous record: mostly forward, sometimes back by up to 2W
    st.one_of(st.integers(0, 3000), st.integers(-20_000, 12_000)),
    st.sampled_from(["10.00", "900.00", "900.01", "bad"]),
)


def values_and_stamps(events: list[tuple[str, int, str]]) -> list[Rec]:
    records, t = [], T0
    for offset, (account, gap, amount) in enumerate(events):
        t += gap
        value = b"{bad" if amount == "bad" else tx(account, amount)
        records.append(Rec(0, offset, t, value))
    return records


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(event, max_size=60),
    limit=st.integers(1, 4),
    seconds=st.sampled_from([0.5, 2.0, 5.0, 10.0]),
    cuts=st.lists(st.integers(0, 60), max_size=3),
)
def test_the_detector_agrees_with_the_reference_through_restores(
    events: list[tuple[str, int, str]], limit: int, seconds: float, cuts: list[int]
) -> None:
    """Random interleavings of a few accounts, gaps and (out-of-order) timestamps: the
    detector's outputs equal the audit's verdicts, also when its window is rebuilt from a
    checkpoint at some offsets along the way (as after a restart or a rebalance)."""
    rule = VelocityRule(limit, seconds)
    records = values_and_stamps(events)
    reference = ReferenceRules(rule_set(rule), DEFAULT_MAX_VALUE_BYTES)
    expected = [reference.expected("in", 0, r.timestamp, r.value) for r in records]

    router, _ = make_router(rule)
    rules = rule_set(rule).partition()
    got: list[Expected] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(records)), len(records)]:
        got += [as_expected(o) for o in router.outputs(records[start:cut], rules)]
        start = max(start, cut)
        checkpoint = rules.checkpoint(start)  # what the commit at `start` carries
        rules = replay(rule, records[checkpoint.replay_from : start])
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(events=st.lists(event, max_size=40))
def test_with_velocity_off_fraud_is_by_amount_alone(events: list[tuple[str, int, str]]) -> None:
    records = values_and_stamps(events)
    reference = ReferenceRules(rule_set(None), DEFAULT_MAX_VALUE_BYTES)
    router, _ = make_router(None)
    got = [as_expected(o) for o in router.outputs(records)]
    assert got == [reference.expected("in", 0, r.timestamp, r.value) for r in records]
    assert {e.rules for e in got if e.verdict is Verdict.FRAUD} <= {b"amount"}


def test_the_router_owns_the_rules_header() -> None:
    """An input's own fraud.rules never reaches legit or fraud; other headers pass."""
    router, _ = make_router(None)
    spoofed = [(HEADER_RULES, b"velocity"), ("trace", b"1")]
    legit = Rec(0, 0, T0, tx("A"), headers=list(spoofed))
    fraud = Rec(0, 1, T0, tx("A", "950.00"), headers=list(spoofed))
    outputs = router.outputs([legit, fraud])
    assert outputs[0] == ("legit", b"k", legit.value, [("trace", b"1")])
    assert outputs[1] == ("fraud", b"k", fraud.value, [("trace", b"1"), (HEADER_RULES, b"amount")])


def test_a_long_stream_agrees_with_the_reference_through_compactions_and_a_restore() -> None:
    """Long enough that the window's arrays are cut at the front many times."""
    rule = VelocityRule(3, 2.0)
    rng = random.Random(7)
    events = [
        (f"ACC{rng.randrange(40)}", rng.choice((0, 5, 10, 10, 20, -25)), "10.00")
        for _ in range(30_000)
    ]
    records = values_and_stamps(events)
    reference = ReferenceRules(rule_set(rule), DEFAULT_MAX_VALUE_BYTES)
    expected = [reference.expected("in", 0, r.timestamp, r.value).verdict for r in records]
    window = PartitionWindow(rule)
    cut = 20_000
    got = [window.fires(tx_source(r), r.timestamp, r.offset) for r in records[:cut]]
    assert len(window) < 5000  # what 2 W of stream time holds, not all that came
    # and the memory behind it: what was forgotten is cut off the arrays, not just skipped
    assert len(window._times) <= 2 * len(window) + 4096
    checkpoint = window.checkpoint(cut)
    # Where the replay starts: the first record still inside S - 2W; none before it is.
    assert window.stream_time is not None
    horizon = window.stream_time - 2 * rule.window_ms
    first = checkpoint.replay_from
    assert records[first].timestamp > horizon
    assert all(r.timestamp <= horizon for r in records[:first])
    restored = replay(rule, records[checkpoint.replay_from : cut])
    got += [
        restored.classify(r.value, r.timestamp, r.offset).verdict is Verdict.FRAUD
        for r in records[cut:]
    ]
    assert [Verdict.FRAUD if fired else Verdict.LEGIT for fired in got] == expected


def tx_source(record: Rec) -> str:
    assert record.value is not None
    return str(json.loads(record.value)["source"])
