"""The backtest's replay on a hand-checked stream: every count, precision and recall below was
worked out by hand from the records and the rules, not by running the code."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from detector import backtest
from fraudcore.core.rules.file import parse_rules
from fraudcore.kafka.types import Record
from tests.samples import tutorial_record

RULES = parse_rules(
    {
        "rules": [
            {"name": "amount", "type": "amount_above", "threshold": 900},
            {"name": "velocity", "type": "count_in_window", "max_transactions": 2,
             "window_seconds": 10},
        ]
    },
    "test",
)  # fmt: skip


def _record(partition: int, offset: int, value: bytes, ts: int, label: str | None = None) -> Record:
    headers = [] if label is None else [(backtest.HEADER_LABEL, label.encode())]
    return Record("tx", partition, offset, ts, b"k", value, headers)


def _tx(amount: float, source: str) -> bytes:
    return tutorial_record(amount, source=source)


# Partition 0 then partition 1, interleaved as a reader would hand them over.
STREAM = [
    _record(0, 0, _tx(100, "AAAAAA"), 1000),  # legit: A's 1st
    _record(0, 1, _tx(950, "AAAAAA"), 2000, "big_ticket"),  # amount; A's 2nd: not over 2
    _record(1, 0, _tx(60, "AAAAAA"), 1000, "velocity_burst"),  # legit: p1 has its own state
    _record(0, 2, _tx(50, "AAAAAA"), 3000, "velocity_burst"),  # velocity: A's 3rd in 10 s
    _record(0, 3, _tx(1000, "AAAAAA"), 4000, "velocity_burst"),  # amount and velocity
    _record(1, 1, _tx(10, "CCCCCC"), 1500, "card_testing"),  # legit: missed
    _record(0, 4, _tx(999, "BBBBBB"), 5000),  # amount on a normal record: a false alert
    _record(0, 5, b"not json", 6000, "card_testing"),  # invalid: a dead letter, seen by no rule
]


def test_replay_counts_a_hand_checked_stream() -> None:
    report = backtest.replay(STREAM, RULES).to_dict()
    assert report["records"] == 8
    assert report["invalid"] == 1
    assert report["labelled"] == {"big_ticket": 1, "card_testing": 2, "velocity_burst": 3}
    amount, velocity = report["rules"]["amount"], report["rules"]["velocity"]
    assert amount["alerts"] == 3
    assert amount["share"] == pytest.approx(3 / 8)
    assert amount["precision"] == pytest.approx(2 / 3)
    assert amount["recall"] == pytest.approx(
        {"big_ticket": 1.0, "card_testing": 0.0, "velocity_burst": 1 / 3}
    )
    assert velocity["alerts"] == 2
    assert velocity["precision"] == 1.0
    assert velocity["recall"] == pytest.approx(
        {"big_ticket": 0.0, "card_testing": 0.0, "velocity_burst": 2 / 3}
    )
    total = report["total"]
    assert total["alerts"] == 4
    assert total["precision"] == pytest.approx(3 / 4)
    assert total["recall"] == pytest.approx(
        {"big_ticket": 1.0, "card_testing": 0.0, "velocity_burst": 2 / 3}
    )
    assert report["overlap"] == [{"rules": ["amount", "velocity"], "records": 1}]


def test_replay_gives_the_live_verdicts_record_by_record() -> None:
    """The fraud.rules value each record gets, as the detector's header would say it."""
    seen: dict[tuple[int, int], str] = {}
    backtest.replay(
        STREAM,
        RULES,
        on_verdict=lambda r, c: seen.__setitem__(
            (r.partition, r.offset), c.rules.decode() or c.verdict.value
        ),
    )
    assert seen == {
        (0, 0): "legit",
        (0, 1): "amount",
        (1, 0): "legit",
        (0, 2): "velocity",
        (0, 3): "amount,velocity",
        (1, 1): "legit",
        (0, 4): "amount",
        (0, 5): "invalid",
    }


def test_precision_is_null_without_labels_or_alerts() -> None:
    unlabelled = [_record(0, 0, _tx(950, "AAAAAA"), 1000), _record(0, 1, _tx(5, "AAAAAA"), 2000)]
    report = backtest.replay(unlabelled, RULES).to_dict()
    assert report["rules"]["amount"]["alerts"] == 1
    assert report["rules"]["amount"]["precision"] is None
    assert report["rules"]["velocity"]["precision"] is None
    assert report["total"]["recall"] == {}
    labelled = [_record(0, 0, _tx(5, "AAAAAA"), 1000, "card_testing")]
    assert backtest.replay(labelled, RULES).to_dict()["total"]["precision"] is None


def test_the_table_names_every_rule_and_scenario() -> None:
    report = backtest.replay(STREAM, RULES).to_dict()
    table = backtest.render(report, "rules.yaml", "tx")
    assert "8 records, 1 invalid" in table
    for word in ("amount", "velocity", "(any rule)", "velocity_burst", "66.7%", "75.0%"):
        assert word in table
    assert "overlap: amount and velocity both fired on 1" in table


def test_since_takes_a_duration_or_an_iso_time() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    noon = int(now.timestamp() * 1000)
    assert backtest.parse_since("10m", now) == noon - 600_000
    assert backtest.parse_since("1.5h", now) == noon - 5_400_000
    assert backtest.parse_since("2024-05-01T12:00:00Z") == noon
    assert backtest.parse_since("2024-05-01T12:00:00") == noon  # no zone: UTC
    assert backtest.parse_since("2024-05-01T14:00:00+02:00") == noon
    with pytest.raises(ValueError, match="ISO-8601"):
        backtest.parse_since("yesterday")


def test_bad_usage_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RULES_FILE", raising=False)
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: x\n    type: nope\n")
    assert backtest.main(["--rules", str(bad)]) == backtest.EXIT_BAD_SETTING
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("backtest: ")
    assert "unknown rule type 'nope'" in err
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n  - name: a\n    type: amount_above\n    threshold: 1\n")
    assert backtest.main(["--rules", str(good), "--since", "soon"]) == backtest.EXIT_BAD_SETTING
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--since 'soon'" in err
