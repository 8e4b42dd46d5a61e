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
    LATEST_FRAUD,
    LEGIT,
    RATE_WINDOW_SECONDS,
    DashboardState,
    PartitionLag,
    lag_from_offsets,
)
from dashboard.render import render
from detector.config import DetectorSettings
from fraudcore.config import load_settings
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
