"""The dashboard's pure parts: the state, the view it gives, and the frame rich draws from it."""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from dashboard.app import Keys, export_text
from dashboard.config import DashboardSettings
from dashboard.model import (
    DEAD_LETTER,
    FRAUD,
    INPUT,
    KNOWN_RULES,
    LATEST_FRAUD,
    LEGIT,
    NO_RULES_HEADER,
    RATE_WINDOW_SECONDS,
    DashboardState,
    PartitionLag,
    RuleCount,
    lag_from_offsets,
)
from dashboard.quality import (
    ALL_RULES,
    EMPTY_RULES,
    HEADER_LABEL,
    MAX_RULE_VALUES,
    OTHER_RULES,
    RuleQuality,
    ScenarioCount,
)
from dashboard.render import render
from detector.config import DetectorSettings
from fraudcore.config import load_settings
from fraudcore.core.rule import HEADER_RULES, RULE_AMOUNT, RULE_VELOCITY
from tests.samples import tutorial_record

NOW = 1_796_000_100.5  # seconds; the last complete second is NOW - 1.5
TOPICS = {INPUT: "in.t", LEGIT: "legit.t", FRAUD: "fraud.t", DEAD_LETTER: "dlq.t"}


def state() -> DashboardState:
    return DashboardState(broker="localhost:9092", group="detector", topics=dict(TOPICS))


def fraud_value(n: int) -> bytes:
    return (
        b'{"id":"id-%d","source":"SRC%03d","target":"TGT%03d","amount":950.5,"currency":"EUR",'
        b'"timestamp":"2026-11-29T15:03:%02d.751Z"}' % (n, n, n, n)
    )


def text_of(view_state: DashboardState, width: int = 110) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(render(view_state.view(NOW, "15:03:04 UTC")))
    return console.export_text()


def test_rates_come_from_record_timestamps_over_complete_seconds() -> None:
    s = state()
    last_complete = int(NOW) - 1
    for second in range(last_complete - RATE_WINDOW_SECONDS + 1, last_complete + 1):
        for _ in range(10):
            s.add(INPUT, second * 1000 + 500, b"x")
    for _ in range(99):
        s.add(INPUT, int(NOW) * 1000, b"x")  # the second in progress: not counted yet
        s.add(INPUT, (last_complete - RATE_WINDOW_SECONDS) * 1000, b"x")  # too old
    assert s.rate(INPUT, NOW) == 10.0
    assert s.rate(LEGIT, NOW) == 0.0
    s.forget_before(NOW)
    assert min(s.per_second[INPUT]) >= int(NOW) - RATE_WINDOW_SECONDS - 2


def test_fraud_share_dead_letter_reasons_and_totals() -> None:
    s = state()
    stamp = (int(NOW) - 2) * 1000
    for _ in range(9):
        s.add(LEGIT, stamp, tutorial_record(10))
    s.add(FRAUD, stamp, fraud_value(1))
    s.add(FRAUD, stamp, fraud_value(2), live=False)  # read only to fill the latest list
    s.add(DEAD_LETTER, 0, b"junk", [("error.reason", b"not_json: Expecting value")])
    s.add(DEAD_LETTER, 0, b"", [("origin", b"x"), ("error.reason", b"empty: no value")])
    s.add(DEAD_LETTER, 0, b"junk", [("error.reason", b"not_json: Extra data")], live=False)
    s.add(DEAD_LETTER, 0, b"junk", None)
    view = s.view(NOW, "t")
    assert view.totals == {INPUT: 0, LEGIT: 9, FRAUD: 1, DEAD_LETTER: 4}
    assert view.fraud_share_total == pytest.approx(0.1)
    assert view.fraud_share_window == pytest.approx(0.1)
    assert view.dead_letters == (("not_json", 2), ("(no reason header)", 1), ("empty", 1))
    assert view.dead_letters_total == 4
    assert [row.id for row in view.latest_fraud] == ["id-2", "id-1"]


def test_latest_fraud_is_newest_first_and_capped() -> None:
    s = state()
    for n in [5, 1, 9, 3, 7, 2, 8, 4, 6, 0, 10]:  # partitions arrive in any order
        s.add(FRAUD, 1_000_000 + n, fraud_value(n))
    rows = s.view(NOW, "t").latest_fraud
    assert len(rows) == LATEST_FRAUD
    assert [row.id for row in rows] == [f"id-{n}" for n in range(10, 10 - LATEST_FRAUD, -1)]
    assert rows[0].timestamp == "15:03:10.751"
    assert (rows[0].source, rows[0].target, rows[0].amount) == ("SRC010", "TGT010", "950.50")


def test_latest_fraud_is_ordered_by_the_time_it_shows() -> None:
    s = state()
    s.add(FRAUD, 2_000, fraud_value(1))  # written later, but the older transaction
    s.add(FRAUD, 1_000, fraud_value(2))
    assert [row.id for row in s.view(NOW, "t").latest_fraud] == ["id-2", "id-1"]


def test_a_fraud_record_without_timestamp_uses_the_record_time() -> None:
    s = state()
    s.add(FRAUD, 1_796_000_000_250, tutorial_record(901.5))
    (row,) = s.view(NOW, "t").latest_fraud
    assert row.timestamp == "00:53:20.250"
    assert row.amount == "901.50"


def rules_header(value: bytes) -> list[tuple[str, bytes]]:
    return [("origin", b"x"), (HEADER_RULES, value)]


def test_the_known_rules_are_each_combination_in_the_declared_order() -> None:
    assert KNOWN_RULES == ("amount", "velocity", "amount,velocity")
    assert KNOWN_RULES[:2] == (RULE_AMOUNT, RULE_VELOCITY)


def test_fraud_is_counted_by_its_rules_header() -> None:
    s = state()
    stamp = (int(NOW) - 2) * 1000
    for _ in range(6):
        s.add(FRAUD, stamp, fraud_value(1), rules_header(b"amount"))
    for _ in range(3):
        s.add(FRAUD, stamp, fraud_value(2), rules_header(b"velocity"))
    s.add(FRAUD, stamp, fraud_value(3), rules_header(b"amount,velocity"))
    s.add(FRAUD, stamp, fraud_value(4), rules_header(b"velocity"), live=False)  # not counted
    s.add(FRAUD, stamp, fraud_value(5))  # an older detector: no header, not taken for amount
    s.add(FRAUD, (int(NOW) - 60) * 1000, fraud_value(6), rules_header(b"amount"))  # too old
    view = s.view(NOW, "t")
    window = RATE_WINDOW_SECONDS
    assert view.fraud_by_rule == (
        RuleCount("amount", 6 / window, 7, 7 / 12),
        RuleCount("velocity", 3 / window, 3, 3 / 12),
        RuleCount("amount,velocity", 1 / window, 1, 1 / 12),
        RuleCount(NO_RULES_HEADER, 1 / window, 1, 1 / 12),
    )
    assert sum(count.total for count in view.fraud_by_rule) == view.totals[FRAUD] == 12
    rows = {row.id: row.rules for row in view.latest_fraud}
    assert rows == {
        "id-1": "amount",
        "id-2": "velocity",
        "id-3": "amount,velocity",
        "id-4": "velocity",
        "id-5": NO_RULES_HEADER,
        "id-6": "amount",
    }


def test_with_no_fraud_read_the_known_rules_show_zero() -> None:
    s = state()
    s.add(FRAUD, 0, fraud_value(1), rules_header(b"amount"), live=False)
    assert s.view(NOW, "t").fraud_by_rule == tuple(
        RuleCount(rules, 0.0, 0, None) for rules in KNOWN_RULES
    )


def test_unexpected_rules_values_are_shown_as_written_and_capped() -> None:
    s = state()
    s.add(FRAUD, 0, fraud_value(1), rules_header(b"velocity,amount"))  # not the declared order
    s.add(FRAUD, 0, fraud_value(2), rules_header(b"  "))
    s.add(FRAUD, 0, fraud_value(3), rules_header(b"geo\nfence \xff" + b"x" * 40))
    s.add(FRAUD, 0, b"not json", rules_header(b" amount "))
    for n in range(MAX_RULE_VALUES + 2):
        s.add(FRAUD, 0, fraud_value(4), rules_header(b"rule-%d" % n))
    s.add(FRAUD, 0, fraud_value(5), rules_header(b"velocity,amount"))  # seen before: its own
    totals = {count.rules: count.total for count in s.view(NOW, "t").fraud_by_rule}
    odd = "geo?fence \ufffd" + "x" * 12 + "…"
    expected = {"amount": 1, "velocity": 0, "amount,velocity": 0, "velocity,amount": 2}
    expected |= {EMPTY_RULES: 1, odd: 1, OTHER_RULES: 5}
    expected |= {f"rule-{n}": 1 for n in range(MAX_RULE_VALUES - 3)}
    assert totals == expected
    s.add(FRAUD, 0, fraud_value(6))
    order = [count.rules for count in s.view(NOW, "t").fraud_by_rule]
    assert order[:5] == [*KNOWN_RULES, "velocity,amount", EMPTY_RULES]  # then the most frequent
    assert order[-2:] == [OTHER_RULES, NO_RULES_HEADER]  # the catch-alls last


def test_an_undecodable_fraud_value_still_shows_its_rules() -> None:
    s = state()
    s.add(FRAUD, 0, b"not json", rules_header(b" velocity "))
    (row,) = s.view(NOW, "t").latest_fraud
    assert (row.source, row.id, row.rules) == ("?", "not json", "velocity")


def test_rule_rates_forget_old_seconds_too() -> None:
    s = state()
    s.add(FRAUD, (int(NOW) - 60) * 1000, fraud_value(1), rules_header(b"amount"))
    s.add(FRAUD, (int(NOW) - 2) * 1000, fraud_value(2), rules_header(b"amount"))
    s.forget_before(NOW)
    assert list(s.rules_per_second["amount"]) == [int(NOW) - 2]
    assert s.rules_totals["amount"] == 2


def test_render_shows_fraud_by_rule_and_the_rules_of_each_row() -> None:
    s = state()
    stamp = (int(NOW) - 2) * 1000
    s.add(FRAUD, stamp, fraud_value(1), rules_header(b"amount"))
    s.add(FRAUD, stamp + 1, fraud_value(2), rules_header(b"amount,velocity"))
    s.add(FRAUD, stamp + 2, fraud_value(3), rules_header(b"velocity"))
    s.add(FRAUD, stamp + 3, fraud_value(4))
    text = text_of(s)
    assert "fraud by rule" in text
    table = text[text.index("fraud by rule") : text.index("latest fraud")]
    for rules in (*KNOWN_RULES, NO_RULES_HEADER):
        assert f"│ {rules} " in table, table
    assert "25.0%" in table
    rows = {line.split()[7]: line.split()[6] for line in text.splitlines() if "id-" in line}
    assert rows == {"id-1": "amount", "id-2": "amount,velocity", "id-3": "velocity", "id-4": "-"}


def test_rules_and_a_real_id_fit_in_100_columns_without_wrapping() -> None:
    s = state()
    value = (
        b'{"id":"0b5a4e8e-2a34-4d43-9e59-7a3b8f0c1d2e","source":"ABC123","target":"XYZ789",'
        b'"amount":1000.00,"currency":"EUR","timestamp":"2026-11-29T15:03:04.751Z"}'
    )
    s.add(FRAUD, 0, value, rules_header(b"amount,velocity"))
    (row,) = [line for line in text_of(s, width=100).splitlines() if "ABC123" in line]
    assert "1,000.00 EUR  amount,velocity  0b5a4e8e-2a34-4d43-9e59-7a3b8f0c1d" in row


def test_lag_per_partition() -> None:
    lag = lag_from_offsets({1: 50, 0: 100, 2: 7}, {0: 90, 1: 50})
    assert lag == (PartitionLag(0, 100, 90), PartitionLag(1, 50, 50), PartitionLag(2, 7, None))
    assert [p.lag for p in lag] == [10, 0, 7]
    s = state()
    s.set_lag(lag)
    assert s.view(NOW, "t").lag_total == 17
    s.set_lag(None, "cannot read offsets: KafkaTimeoutError")
    view = s.view(NOW, "t")
    assert view.lag == lag  # the last known lag stays, with the error under it
    assert view.lag_error == "cannot read offsets: KafkaTimeoutError"


def test_render_shows_every_part() -> None:
    s = state()
    stamp = (int(NOW) - 2) * 1000
    for _ in range(40):
        s.add(INPUT, stamp, b"x")
    for _ in range(36):
        s.add(LEGIT, stamp, b"x")
    for n in range(3):
        s.add(FRAUD, stamp + n, fraud_value(n))
    s.add(DEAD_LETTER, 0, b"junk", [("error.reason", b"bad_amount: negative")])
    s.set_lag(lag_from_offsets({0: 120, 1: 80}, {0: 100, 1: 80}))
    text = text_of(s)
    for expected in (
        "broker localhost:9092",
        "group detector",
        "15:03:04 UTC",
        "in.t",
        "legit.t",
        "fraud.t",
        "dlq.t",
        "8.0",  # input: 40 records in a 5 s window
        "7.2",  # legit
        "0.6",  # fraud
        "fraud share 7.7% over the last 5s",
        "dead letters: 1",
        "bad_amount",
        "consumer lag of detector: 20",
        "latest fraud",
        "id-2",
        "SRC001",
        "950.50 EUR",
        "q or Ctrl-C quits",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"
    assert text.index("id-2") < text.index("id-1") < text.index("id-0")


def test_render_of_an_empty_state_and_a_problem() -> None:
    s = state()
    s.missing_topics = ("dlq.t",)
    s.status = "broker at localhost:9092 is not answering: KafkaTimeoutError"
    s.set_lag(None, "cannot read offsets: KafkaTimeoutError")
    text = text_of(s, width=80)
    assert "dlq.t (missing)" in text
    assert "not answering: KafkaTimeoutError" in text
    assert "fraud share - over the last 5s" in text
    assert "none yet" in text
    assert "cannot read offsets" in text


def test_export_text_is_plain_and_has_no_key_hint() -> None:
    s = state()
    s.add(FRAUD, int(NOW - 2) * 1000, fraud_value(4))
    text = export_text(s, width=100)
    assert "\x1b[" not in text
    assert "id-4" in text
    assert "q or Ctrl-C quits" not in text


def test_dashboard_defaults_are_the_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("TRANSACTIONS_TOPIC", "LEGIT_TOPIC", "FRAUD_TOPIC", "DEAD_LETTER_TOPIC")
    for name in (*names, "CONSUMER_GROUP"):
        monkeypatch.delenv(name, raising=False)
    dashboard = load_settings(DashboardSettings)
    detector = load_settings(DetectorSettings)
    for field in ("transactions_topic", "legit_topic", "fraud_topic", "dead_letter_topic"):
        assert getattr(dashboard, field) == getattr(detector, field)
    assert dashboard.consumer_group == detector.consumer_group


def test_keys_read_nothing_when_stdin_is_not_a_terminal() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"q")
        with os.fdopen(read_end, "rb", closefd=False) as pipe, Keys(pipe) as keys:
            assert keys.pressed() == ""
        with Keys(io.StringIO("q")) as keys:  # no file descriptor at all
            assert keys.pressed() == ""
    finally:
        os.close(read_end)
        os.close(write_end)


def labelled(rules: bytes | None, label: bytes | None) -> list[tuple[str, bytes]]:
    """The headers of an output record: fraud.rules when given, sim.label when given."""
    headers = [("trace", b"t")]
    if rules is not None:
        headers.append((HEADER_RULES, rules))
    if label is not None:
        headers.append((HEADER_LABEL, label))
    return headers


def quality_state() -> DashboardState:
    """A hand-checked stream: 6 labelled records (4 card_testing, 2 big_ticket) and 6 not.

    amount fires on 4 (3 labelled), velocity on 4 (2 labelled), the set on 6 (4 labelled);
    card_testing: 2 caught (velocity both, amount one), 1 missed on legit, 1 in dead letters;
    big_ticket: 2 caught by amount.
    """
    s = state()
    stamp = (int(NOW) - 2) * 1000
    for rules, label in [
        (b"amount,velocity", b"card_testing"),
        (b"velocity", b"card_testing"),
        (b"amount", b"big_ticket"),
        (b"amount", b"big_ticket"),
        (b"amount", None),
        (b"velocity", None),
    ]:
        s.add(FRAUD, stamp, fraud_value(1), labelled(rules, label))
    s.add(LEGIT, stamp, tutorial_record(10), labelled(None, b"card_testing"))
    s.add(DEAD_LETTER, stamp, b"x", [*labelled(None, b"card_testing"), ("error.reason", b"e")])
    for _ in range(4):
        s.add(LEGIT, stamp, tutorial_record(10), labelled(None, None))
    s.add(INPUT, stamp, b"x", labelled(None, b"card_testing"))  # shows again on an output
    s.add(FRAUD, stamp, fraud_value(2), labelled(b"amount", b"big_ticket"), live=False)
    return s


def test_without_labels_there_is_no_quality_and_no_panel() -> None:
    s = state()
    s.add(FRAUD, 0, fraud_value(1), rules_header(b"amount"))
    assert s.view(NOW, "t").quality is None
    assert "quality" not in text_of(s)


def test_precision_and_recall_by_rule_from_the_label_header() -> None:
    quality = quality_state().view(NOW, "t").quality
    assert quality is not None
    assert quality.scenarios == (
        ScenarioCount("big_ticket", labelled=2, caught=2, missed=0),
        ScenarioCount("card_testing", labelled=4, caught=2, missed=1),
    )
    amount, velocity = quality.rules
    assert amount == RuleQuality(
        RULE_AMOUNT, 4, 3, 0.75, 0.5, {"big_ticket": 1.0, "card_testing": 0.25}
    )
    assert velocity == RuleQuality(
        RULE_VELOCITY, 3, 2, 2 / 3, 2 / 6, {"big_ticket": 0.0, "card_testing": 0.5}
    )
    assert quality.total == RuleQuality(
        ALL_RULES, 6, 4, 4 / 6, 4 / 6, {"big_ticket": 1.0, "card_testing": 0.5}
    )


def test_rule_and_label_names_from_records_are_made_printable_and_capped() -> None:
    s = state()
    for n in range(MAX_RULE_VALUES + 3):
        s.add(FRAUD, 0, fraud_value(n), labelled(b"r%d,\x1bx" % n, b"s%d\x07" % n))
    quality = s.quality.view()
    assert quality is not None
    names = [rule.rule for rule in quality.rules]
    assert len(names) == MAX_RULE_VALUES + 1
    assert OTHER_RULES in names
    assert "?x" in names
    assert len(quality.scenarios) == MAX_RULE_VALUES + 1
    assert {scenario.scenario for scenario in quality.scenarios} >= {"s0?", OTHER_RULES}


def test_render_shows_the_quality_table() -> None:
    text = text_of(quality_state(), width=120)
    title = "quality since start (sim.label header)"
    panel = text[text.index(title) : text.index("dead letters")]
    rows = {line.split()[1]: line.split()[2:5] for line in panel.splitlines() if "%" in line}
    assert rows["amount"] == ["4", "75.0%", "50.0%"]
    assert rows["velocity"] == ["3", "66.7%", "33.3%"]
    assert rows["(all"] == ["rules)", "6", "66.7%"]
    assert "card_testing" in panel
    assert "big_ticket" in panel
