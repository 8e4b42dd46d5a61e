"""The dashboard page's server without a broker: its settings, its address, and its frames,
which carry the terminal view's numbers (the same DashboardView), not a second computation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from dashboard.feed import frame_json
from dashboard.model import FRAUD, INPUT, LEGIT, DashboardState
from dashboard.quality import ALL_RULES, HEADER_LABEL
from dashboard.web import listen
from fraudcore.core.codec import encode
from fraudcore.core.model import Transaction
from fraudcore.core.rule import HEADER_RULES
from tests.kafka_helpers import REPO_ROOT


def run_web(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboard", "--web"],
        env={**os.environ, "KAFKA_BROKER_URL": "127.0.0.1:1", **env},
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_PORT", "http"),
        ("DASHBOARD_PORT", "0"),
        ("DASHBOARD_PORT", "70000"),
        ("DASHBOARD_HOST", "not a host"),
        ("DASHBOARD_HOST", "<script>"),
    ],
)
def test_a_bad_address_setting_exits_2_with_one_line(name: str, value: str) -> None:
    done = run_web({name: value})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"dashboard: invalid setting {name}="), lines[0]


def test_a_taken_port_exits_2_with_one_line() -> None:
    with listen("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        done = run_web({"DASHBOARD_PORT": str(port)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"dashboard: cannot listen on 127.0.0.1:{port}"), lines[0]


def test_the_frame_is_the_views_numbers() -> None:
    state = DashboardState(broker="b:9092", group="g", topics={INPUT: "in", LEGIT: "l", FRAUD: "f"})
    now = 1_800_000_000.0
    stamp = int((now - 2) * 1000)
    for _ in range(10):
        state.add(INPUT, stamp, b"{}")
    for _ in range(6):
        state.add(LEGIT, stamp, b"{}")
    fraud = Transaction(source="<b>A</b>", target="B", amount=Decimal("950"))
    for _ in range(4):
        state.add(FRAUD, stamp, encode(fraud), [(HEADER_RULES, b"amount")])
    view = state.view(now, "12:00:00 UTC")

    frame = json.loads(frame_json(view, True, [[int(now), 2.0, 1.2, 0.8, 0.0]], 1, now))

    assert frame["totals"] == view.totals == {INPUT: 10, LEGIT: 6, FRAUD: 4, "dead-letter": 0}
    assert frame["rates"] == view.rates
    assert frame["fraud_share_total"] == view.fraud_share_total == 0.4
    assert frame["fraud_by_rule"][0] == {"rules": "amount", "rate": 0.8, "total": 4, "share": 1.0}
    assert frame["latest_fraud"][0]["source"] == "<b>A</b>"  # as data: the page sets it as text
    assert frame["broker_up"] is True
    assert frame["readers"] == 1
    assert frame["refresh_seconds"] == 1.0
    assert frame["roles"] == [INPUT, LEGIT, FRAUD, "dead-letter"]


def test_the_frame_carries_quality_only_once_a_label_is_read() -> None:
    state = DashboardState(broker="b", group="g", topics={FRAUD: "f"})
    value = encode(Transaction(source="A", target="B", amount=Decimal("950")))
    state.add(FRAUD, 0, value, [(HEADER_RULES, b"amount")])
    assert json.loads(frame_json(state.view(1.0, "t"), True, [], 1, 1.0))["quality"] is None
    state.add(FRAUD, 0, value, [(HEADER_RULES, b"amount"), (HEADER_LABEL, b"big_ticket")])
    quality = json.loads(frame_json(state.view(1.0, "t"), True, [], 1, 1.0))["quality"]
    assert quality["total"] == {
        "rule": ALL_RULES,
        "alerts": 2,
        "true_positives": 1,
        "precision": 0.5,
        "recall": 1.0,
        "recall_by_scenario": {"big_ticket": 1.0},
    }
    assert [rule["rule"] for rule in quality["rules"]] == ["amount"]
    assert quality["scenarios"] == [
        {"scenario": "big_ticket", "labelled": 1, "caught": 1, "missed": 0}
    ]
