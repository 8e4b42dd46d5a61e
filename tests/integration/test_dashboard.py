"""The dashboard on a real stream: what the detector wrote, drawn through rich's console capture,
and the terminal left as it was found when `q` or Ctrl-C ends it."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dashboard.app import TopicReader, collect, export_text
from dashboard.config import DashboardSettings
from dashboard.model import DEAD_LETTER, FRAUD, INPUT, NO_RULES_HEADER, DashboardState
from fraudcore.config import load_settings
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from fraudcore.core.rule import HEADER_RULES
from fraudcore.runtime import StopFlag
from kafka import KafkaProducer
from tests.kafka_helpers import (
    REPO_ROOT,
    Service,
    Topics,
    consume,
    create_topic,
    produce,
    run_command,
)
from tests.samples import BAD_VALUES

pytestmark = pytest.mark.integration


@pytest.fixture
def processed(bootstrap: str, topics: Topics, tmp_path: Path) -> list[str]:
    """A known mix through a real detector, all of it committed. Yields the fraud ids."""
    create_topic(bootstrap, topics.input, partitions=3)
    factory = TransactionFactory(seed=31)
    txs = [factory.next() for _ in range(300)]
    bad = [(f"bad-{i}".encode(), value) for i, (_, value, _) in enumerate(BAD_VALUES)]
    produce(bootstrap, topics.input, [*((encode_key(t), encode(t)) for t in txs), *bad])
    detector = Service.module("detector", topics.env(bootstrap), tmp_path)
    try:
        outputs = [topics.legit, topics.fraud, topics.invalid]
        assert len(consume(bootstrap, outputs, len(txs) + len(bad), timeout=90)) == len(txs) + len(
            bad
        )
    finally:
        assert detector.stop() == 0, detector.output()
    return [str(t.id) for t in txs if t.amount > 900]


def test_dashboard_renders_the_stream(
    bootstrap: str, topics: Topics, processed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, reader = open_reader(bootstrap, topics, monkeypatch)
    state.topics = dict(reader.topics)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            collect(reader, StopFlag(), 0.5)
            view = state.view(time.time(), "now")
            if view.dead_letters_total == len(BAD_VALUES) and len(view.lag) == 3:
                break
    finally:
        reader.close()

    view = state.view(time.time(), "now")
    assert view.dead_letters_total == len(BAD_VALUES)  # read from the beginning: all of them
    assert dict(view.dead_letters) == Counter(reason for _, _, reason in BAD_VALUES)
    assert view.lag_total == 0, view.lag  # the detector committed everything
    assert view.latest_fraud
    assert {row.id for row in view.latest_fraud} <= set(processed)

    text = export_text(state, width=120)
    for expected in (
        f"broker {bootstrap}",
        topics.input,
        topics.legit,
        topics.fraud,
        topics.invalid,
        f"dead letters: {len(BAD_VALUES)}",
        "not_json",
        "too_deep",
        f"consumer lag of {topics.group}: 0",
        "latest fraud",
        view.latest_fraud[0].id,
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"


def test_rates_start_a_few_seconds_back_and_dead_letters_from_the_beginning(
    bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (topics.input, topics.legit, topics.fraud, topics.invalid):
        create_topic(bootstrap, name, partitions=1)
    an_hour_ago = int((time.time() - 3600) * 1000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for topic in (topics.input, topics.invalid):
            for _ in range(7):  # old: before the rate window
                producer.send(topic, b"old", timestamp_ms=an_hour_ago)
            for _ in range(3):  # new
                producer.send(topic, b"new")
        producer.flush(timeout=30)
    finally:
        producer.close()
    state, reader = open_reader(bootstrap, topics, monkeypatch)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and state.totals[DEAD_LETTER] < 10:
            collect(reader, StopFlag(), 0.5)
        collect(reader, StopFlag(), 1.0)  # anything more would show up now
    finally:
        reader.close()
    assert state.totals[INPUT] == 3  # the live view starts a few seconds back, not at 0
    assert state.totals[DEAD_LETTER] == 10  # every dead letter, however old
    assert dict(state.dead_letters) == {"(no reason header)": 10}


def test_fraud_is_counted_by_the_rules_header_it_was_written_with(
    bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header as a detector writes it, through a real broker (no detector needed)."""
    for name in (topics.input, topics.legit, topics.invalid):
        create_topic(bootstrap, name, partitions=1)
    create_topic(bootstrap, topics.fraud, partitions=2)
    written = {"amount": 3, "velocity": 2, "amount,velocity": 1, None: 1}
    factory = TransactionFactory(seed=13, account_pool_size=2)
    rules_of: dict[str, str] = {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for rules, count in written.items():
            for tx in factory.take(count):
                headers = [] if rules is None else [(HEADER_RULES, rules.encode())]
                producer.send(topics.fraud, encode(tx), encode_key(tx), headers=headers)
                rules_of[str(tx.id)] = rules or NO_RULES_HEADER
        producer.flush(timeout=30)
    finally:
        producer.close()
    state, reader = open_reader(bootstrap, topics, monkeypatch)
    state.topics = dict(reader.topics)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and state.totals[FRAUD] < len(rules_of):
            collect(reader, StopFlag(), 0.5)
    finally:
        reader.close()
    view = state.view(time.time(), "now")
    totals = {count.rules: count.total for count in view.fraud_by_rule}
    assert totals == {rules or NO_RULES_HEADER: count for rules, count in written.items()}
    assert {row.id: row.rules for row in view.latest_fraud} == rules_of
    text = export_text(state, width=120)
    assert "fraud by rule" in text
    assert "amount,velocity" in text


def open_reader(
    bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch
) -> tuple[DashboardState, TopicReader]:
    """The dashboard's state and reader, with settings from the topics' environment."""
    for name, value in topics.env(bootstrap).items():
        monkeypatch.setenv(name, value)
    settings = load_settings(DashboardSettings)
    state = DashboardState(settings.kafka_broker_url, settings.consumer_group, {})
    return state, TopicReader(settings, state)


def dashboard_env(bootstrap: str, topics: Topics) -> dict[str, str]:
    return {**os.environ, **topics.env(bootstrap), "COLUMNS": "120", "LINES": "50"}


@pytest.mark.usefixtures("processed")
def test_once_prints_one_plain_frame_without_a_terminal(bootstrap: str, topics: Topics) -> None:
    done = run_command(
        [sys.executable, "-m", "dashboard", "--once", "3", "--width", "120"],
        dashboard_env(bootstrap, topics),
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert f"dead letters: {len(BAD_VALUES)}" in done.stdout, done.stdout
    assert "\x1b[" not in done.stdout


class Terminal:
    """A pseudo-terminal the dashboard runs in, with everything it prints collected."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.output = bytearray()
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:
                    return

    def wait_for(self, text: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, (
                f"{text!r} never shown: {bytes(self.output)[-2000:]!r}"
            )
            time.sleep(0.1)

    def close(self) -> None:
        self._done.set()
        self._reader.join(5)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.usefixtures("processed")
@pytest.mark.parametrize("how", ["q", "ctrl-c"])
def test_live_view_quits_cleanly_and_restores_the_terminal(
    bootstrap: str, topics: Topics, how: str
) -> None:
    terminal = Terminal()
    before = termios.tcgetattr(terminal.slave)
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard"],
        env=dashboard_env(bootstrap, topics),
        cwd=REPO_ROOT,
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
    )
    try:
        terminal.wait_for(b"latest fraud", 60)
        # cbreak while it runs: no echo, no line buffering
        during = termios.tcgetattr(terminal.slave)
        assert not during[3] & termios.ICANON
        assert not during[3] & termios.ECHO
        if how == "q":
            os.write(terminal.master, b"q")
        else:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, bytes(terminal.output)[-2000:]
        assert termios.tcgetattr(terminal.slave) == before
        assert b"Traceback" not in terminal.output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        terminal.close()
