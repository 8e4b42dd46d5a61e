"""LOG_FORMAT: the human default and one JSON object per line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from detector.config import DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.runtime import HUMAN_FORMAT, ClientLogLimit, JsonFormatter, configure_logging
from tests.kafka_helpers import REPO_ROOT


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("detector.app", logging.WARNING, __file__, 1, message, args, exc_info)
    rec.created = 1_796_000_000.25  # 2026-11-30 00:53:20.250 UTC
    return rec


def test_json_line_has_the_fields() -> None:
    line = JsonFormatter().format(record("processed %d records", 3))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry == {
        "timestamp": "2026-11-30T00:53:20.250+00:00",
        "level": "WARNING",
        "logger": "detector.app",
        "message": "processed 3 records",
    }


def test_json_line_carries_the_exception_and_stays_one_line() -> None:
    line = JsonFormatter().format(record("failed\nbadly: %s", "naïve €", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed\nbadly: naïve €"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in entry["exception"]


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kafka_level = logging.getLogger("kafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(kafka_level)


@pytest.mark.usefixtures("restore_root_logging")
@pytest.mark.parametrize(
    ("log_format", "formatter"), [("human", logging.Formatter), ("json", JsonFormatter)]
)
def test_configure_logging_picks_the_format(log_format: str, formatter: type) -> None:
    configure_logging("DEBUG", log_format)
    (handler,) = logging.getLogger().handlers
    assert type(handler.formatter) is formatter
    if log_format == "human":
        assert handler.formatter is not None
        assert handler.formatter._fmt == HUMAN_FORMAT
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("kafka").level == logging.WARNING


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert load_settings(DetectorSettings).log_format == "human"
    monkeypatch.setenv("LOG_FORMAT", " JSON ")
    assert load_settings(DetectorSettings).log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT='xml'"):
        load_settings(DetectorSettings)


def test_a_service_logs_json_lines_end_to_end() -> None:
    """The detector with LOG_FORMAT=json and no broker: every stderr line is a JSON object."""
    done = subprocess.run(
        [sys.executable, "-m", "detector"],
        env={
            "PATH": "/usr/bin:/bin",
            "LOG_FORMAT": "json",
            "KAFKA_BROKER_URL": "127.0.0.1:1",
            "BROKER_WAIT_SECONDS": "0.5",
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]
    assert entries[0]["message"].startswith("detector starting:")
    assert entries[-1]["level"] == "ERROR"
    assert "no Kafka broker answered" in entries[-1]["message"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client_record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None if exc is None else (type(exc), exc, None)
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


def test_client_lines_are_limited_to_one_per_interval_and_say_what_was_dropped() -> None:
    clock = Clock()
    limit = ClientLogLimit(10.0, clock)
    assert limit.filter(client_record("kafka.net.connection", "connection lost"))
    assert not limit.filter(client_record("kafka.net.manager", "connection failed"))
    assert not limit.filter(client_record("kafka.coordinator", "coordinator dead"))
    assert limit.filter(client_record("detector.app", "batch failed")), "our own lines pass"
    clock.now += 10.0
    later = client_record("kafka.producer.sender", "retrying")
    assert limit.filter(later)
    assert later.getMessage() == "retrying (2 more client lines dropped)"


def test_a_connection_reset_traceback_becomes_one_line() -> None:
    limit = ClientLogLimit(0.0)
    record = client_record("kafka.net.transport", "error receiving", ConnectionResetError(104, "x"))
    assert limit.filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "error receiving: ConnectionResetError(104, 'x')"
    other = client_record("kafka.net.transport", "bug", ValueError("y"))
    assert limit.filter(other)
    assert other.exc_info is not None, "an unexpected error keeps its traceback"


@pytest.mark.usefixtures("restore_root_logging")
def test_client_log_level_setting_turns_the_library_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_CLIENT_LOG_LEVEL", "debug")
    monkeypatch.setenv("KAFKA_CLIENT_LOG_EVERY_SECONDS", "0")
    settings = load_settings(DetectorSettings)
    configure_logging(
        "DEBUG", "human", settings.kafka_client_log_level, settings.kafka_client_log_every_seconds
    )
    assert logging.getLogger("kafka").level == logging.DEBUG
    configure_logging("INFO", "human", settings.kafka_client_log_level)
    assert logging.getLogger("kafka").level == logging.INFO, "never below LOG_LEVEL"
