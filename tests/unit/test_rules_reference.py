"""Every rule type on at once: the detector's rule state against the audit's reference
implementation (detector/reference.py) on random streams of a few accounts, also when the state
is restored at random offsets the way a new owner restores it (detector/rule_state.py: the
windows replayed from the input, the histories read back from the changelogs they wrote)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from detector.reference import Expected, ReferenceRules
from detector.rule_state import RuleStates
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES, encode
from fraudcore.core.model import Transaction
from fraudcore.core.rules.file import parse_rules
from fraudcore.core.rules.ruleset import RuleSet
from fraudcore.kafka.types import Committed, Record, TopicPartition

TP = TopicPartition("in", 0)
CHANGELOGS = ["group-spike-changelog", "group-range-changelog"]
T0 = 1_800_000_000_000


class LogReader:
    """The restore's reader over the input and the changelog written so far."""

    def __init__(self, logs: dict[TopicPartition, list[Record]]) -> None:
        self.logs = logs

    def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        return 0, len(self.logs.get(tp, []))

    def read(self, tp: TopicPartition, start: int, end: int, timeout: float) -> Iterator[Record]:
        yield from self.logs.get(tp, [])[start:end]

    def close(self) -> None:
        pass


def all_rules(limit: int, seconds: float, z: str, max_amount: str, factor: str) -> RuleSet:
    return parse_rules(
        {
            "rules": [
                {"name": "amount", "type": "amount_above", "threshold": Decimal(900)},
                {
                    "name": "velocity",
                    "type": "count_in_window",
                    "max_transactions": limit,
                    "window_seconds": seconds,
                },
                {
                    "name": "spike",
                    "type": "amount_spike",
                    "history": 4,
                    "min_history": 2,
                    "z": Decimal(z),
                    "idle_days": Decimal("0.0001"),  # 8.64 s: accounts idle out in the stream
                },
                {
                    "name": "range",
                    "type": "amount_out_of_range",
                    "history": 3,
                    "min_history": 1,
                    "factor": Decimal(factor),
                    "idle_days": Decimal("0.0001"),
                },
                {
                    "name": "total",
                    "type": "sum_in_window",
                    "max_amount": Decimal(max_amount),
                    "window_seconds": seconds,
                },
            ]
        },
        "test",
    )


event = st.tuples(
    st.sampled_from(("AAAAAA", "BBBBBB", "CCCCCC")),
    st.one_of(st.integers(0, 3000), st.integers(-20_000, 12_000)),
    st.sampled_from(
        ["10.00", "10.00", "20.00", "25.00", "25.01", "30.00", "950.00", "12.125", "bad"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(event, max_size=70),
    limit=st.integers(1, 4),
    seconds=st.sampled_from([0.5, 2.0, 5.0, 10.0]),
    z=st.sampled_from(["1", "1.5", "2"]),
    max_amount=st.sampled_from(["40.00", "60.00", "1000.00"]),
    factor=st.sampled_from(["1.25", "2", "2.5", "3"]),
    cuts=st.lists(st.integers(0, 70), max_size=4),
)
def test_every_rule_agrees_with_the_reference_through_restores(  # noqa: PLR0917  # hypothesis
    events: list[tuple[str, int, str]],
    limit: int,
    seconds: float,
    z: str,
    max_amount: str,
    factor: str,
    cuts: list[int],
) -> None:
    rule_set = all_rules(limit, seconds, z, max_amount, factor)
    records, t = [], T0
    for offset, (account, gap, amount) in enumerate(events):
        t += gap
        value = b"{bad" if amount == "bad" else encode(Transaction(account, "Z", Decimal(amount)))
        records.append(Record("in", 0, offset, t, account.encode(), value))
    reference = ReferenceRules(rule_set, DEFAULT_MAX_VALUE_BYTES)
    expected = [reference.expected("in", 0, r.timestamp, r.value) for r in records]

    logs: dict[TopicPartition, list[Record]] = {TP: records}
    for topic in CHANGELOGS:
        logs[TopicPartition(topic, 0)] = []
    states = RuleStates(rule_set, lambda: LogReader(logs), DEFAULT_MAX_VALUE_BYTES, CHANGELOGS)  # type: ignore[arg-type,return-value]
    got: list[Expected] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(records)), len(records)]:
        rules = states.partition(TP)
        for r in records[start:cut]:
            result = rules.classify(r.value, r.timestamp, r.offset)
            got.append(Expected(result.verdict, result.rules))
        start = max(start, cut)
        # the batch commits: its changelog records, then the offset with its metadata
        for target, key, change, headers in states.changelog(TP, start):
            changelog = logs[TopicPartition(target.topic, 0)]
            changelog.append(Record(target.topic, 0, len(changelog), 0, key, change, headers))
        metadata = states.metadata(TP, start)
        states.forget({TP})  # a new owner, or a failed batch: restored from the commit
        states.restore(TP, Committed(start, metadata) if start else None)
    assert got == expected
