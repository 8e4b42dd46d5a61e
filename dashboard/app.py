"""`python -m dashboard`: a live terminal view of the topics, for the local or the Docker broker.

It reads the four topics itself (read_committed, no consumer group, nothing committed), so it
changes nothing and needs nothing from the services:

- input, legit and fraud from a few seconds back, so that rates show from the first frame;
  the fraud topic also from its last few records, for the latest-fraud list;
- the dead-letter topic from the beginning, so that its counts by reason are complete;
- the detector group's consumer lag from its committed offsets and the input's end offsets.

Keys: `q` quits, and so does Ctrl-C (or SIGTERM). The terminal is put in cbreak mode (keys
arrive without Enter, nothing echoes) and restored on exit, whatever the exit. When standard
input is not a terminal, keys are not read and only the signals stop it.

`--once SECONDS` reads for that long, prints one frame as plain text and exits: for scripts,
and for the text capture in the docs. `--web` serves the same model as a page instead
(dashboard/web.py).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import select
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live

from dashboard.config import DashboardSettings
from dashboard.model import (
    DEAD_LETTER,
    FRAUD,
    INPUT,
    LATEST_FRAUD,
    LEGIT,
    RATE_WINDOW_SECONDS,
    DashboardState,
    lag_from_offsets,
)
from dashboard.render import render
from fraudcore import kafka
from fraudcore.config import SettingsError, load_settings
from fraudcore.errors import BrokerUnavailableError, ClientError
from fraudcore.kafka.types import TopicPartition
from fraudcore.runtime import LIBRARY_LOGGERS, StopFlag, configure_logging

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100
REQUEST_TIMEOUT_MS = 5000
TOPIC_RETRY_SECONDS = 5.0
QUIT_KEYS = frozenset("qQ")


def topics_of(settings: DashboardSettings) -> dict[str, str]:
    return {
        INPUT: settings.transactions_topic,
        LEGIT: settings.legit_topic,
        FRAUD: settings.fraud_topic,
        DEAD_LETTER: settings.dead_letter_topic,
    }


def _clock_text(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")


class TopicReader:
    """The Kafka side: one reader for the four topics, one admin client for the group's lag."""

    def __init__(self, settings: DashboardSettings, state: DashboardState) -> None:
        self.settings = settings
        self.state = state
        self.topics = topics_of(settings)
        self._role_of = {topic: role for role, topic in self.topics.items()}
        driver = kafka.driver(settings)
        self.consumer = driver.reader(
            settings, "dashboard", from_latest=True, request_timeout_ms=REQUEST_TIMEOUT_MS
        )
        self.admin = driver.admin(settings, "dashboard", REQUEST_TIMEOUT_MS)
        self._live_from: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._topics_checked_at = float("-inf")

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()

    # -- assignment

    def maybe_assign(self, now: float) -> None:
        """Assign the partitions of the topics that exist; look again later for missing ones.

        `now` is monotonic time, for pacing the retries.
        """
        if not self.state.missing_topics and self._assigned:
            return
        if now - self._topics_checked_at < TOPIC_RETRY_SECONDS:
            return
        self._topics_checked_at = now
        found: set[TopicPartition] = set()
        missing = []
        for topic in self.topics.values():
            partitions = self.consumer.partitions(topic)
            if not partitions:
                missing.append(topic)
                continue
            found |= set(partitions)
        self.state.missing_topics = tuple(missing)
        new = found - self._assigned
        if not new:
            return
        positions = {tp: self.consumer.position(tp) for tp in self._assigned}
        self.consumer.assign(sorted(found))
        for tp, offset in positions.items():
            if offset is not None:
                self.consumer.seek(tp, offset)
        self._seek_new(sorted(new))
        self._assigned = found

    def _seek_new(self, partitions: list[TopicPartition]) -> None:
        beginning = self.consumer.beginning_offsets(partitions)
        end = self.consumer.end_offsets(partitions)
        since_ms = int((time.time() - RATE_WINDOW_SECONDS - 1) * 1000)  # wall clock: timestamps
        by_time = self.consumer.offsets_for_times(
            {tp: since_ms for tp in partitions if self._role_of[tp.topic] != DEAD_LETTER}
        )
        for tp in partitions:
            role = self._role_of[tp.topic]
            if role == DEAD_LETTER:
                start = live = beginning[tp]
            else:
                found = by_time.get(tp)
                live = found if found is not None else end[tp]
                start = live
                if role == FRAUD:  # a few older ones too, for the latest-fraud list
                    start = min(live, max(beginning[tp], end[tp] - LATEST_FRAUD))
            self._live_from[tp] = live
            self.consumer.seek(tp, start)

    # -- records and lag

    def poll(self, timeout_ms: int = POLL_TIMEOUT_MS) -> int:
        """Read what is there into the state; the number of records read."""
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return 0
        count = 0
        for tp, records in self.consumer.poll(timeout_ms).items():
            role = self._role_of[tp.topic]
            live_from = self._live_from.get(tp, 0)
            for record in records:
                self.state.add(
                    role, record.timestamp, record.value, record.headers, record.offset >= live_from
                )
            count += len(records)
        return count

    def refresh_lag(self) -> None:
        """The group's committed offsets against the input's end offsets, per partition."""
        group = self.settings.consumer_group
        input_tps = sorted(tp for tp in self._assigned if tp.topic == self.topics[INPUT])
        if not input_tps:
            self.state.set_lag((), None)
            return
        try:
            end = self.consumer.end_offsets(input_tps)
            offsets = self.admin.committed_offsets(group, input_tps)
        except ClientError as exc:
            name = type(exc.cause or exc).__name__
            self.state.set_lag(None, f"cannot read offsets: {name}")
            self.state.status = (
                f"broker at {self.settings.kafka_broker_url} is not answering: {name}"
            )
            return
        committed = {tp.partition: offset for tp, offset in offsets.items()}
        self.state.set_lag(lag_from_offsets({tp.partition: end[tp] for tp in input_tps}, committed))
        self.state.status = ""


def open_reader(settings: DashboardSettings, state: DashboardState) -> TopicReader | None:
    """A reader, or None while the broker is away (the state then says so)."""
    try:
        return TopicReader(settings, state)
    except ClientError as exc:
        state.status = f"broker at {settings.kafka_broker_url} is not answering: {exc}"
        return None


def read_step(reader: TopicReader) -> bool:
    """One round of run_live's reading; False (the state says why) when the broker is away."""
    try:
        reader.maybe_assign(time.monotonic())
        reader.poll()
    except ClientError as exc:
        name = type(exc.cause or exc).__name__
        reader.state.status = (
            f"broker at {reader.settings.kafka_broker_url} is not answering: {name}"
        )
        return False
    return True


class Keys:
    """Single key presses from a terminal in cbreak mode; nothing when stdin is not a TTY."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._fd: int | None = None
        self._saved: Any = None

    def __enter__(self) -> Keys:
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        if not os.isatty(fd):
            return self
        import termios  # noqa: PLC0415 - POSIX only; not needed when stdin is not a TTY
        import tty  # noqa: PLC0415

        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)  # no line buffering, no echo; Ctrl-C still sends SIGINT
        self._fd = fd
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            import termios  # noqa: PLC0415

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None

    def pressed(self) -> str:
        """The keys pressed since the last call ('' if none); never blocks."""
        if self._fd is None:
            return ""
        ready, _, _ = select.select([self._fd], [], [], 0)
        if not ready:
            return ""
        return os.read(self._fd, 64).decode(errors="replace")


def collect(reader: TopicReader, stop: StopFlag, seconds: float) -> None:
    """Read for `seconds` (or until stopped), keeping the lag fresh."""
    deadline = time.monotonic() + seconds
    next_lag = 0.0
    while not stop.is_set() and time.monotonic() < deadline:
        reader.maybe_assign(time.monotonic())
        reader.poll()
        if time.monotonic() >= next_lag:
            reader.refresh_lag()
            next_lag = time.monotonic() + 1.0


def frame(state: DashboardState, footer: str = "q or Ctrl-C quits") -> Any:
    now = time.time()
    state.forget_before(now)
    return render(state.view(now, _clock_text(now)), footer)


def run_live(reader: TopicReader, stop: StopFlag, console: Console, refresh: float) -> None:
    state = reader.state
    with (
        Keys(sys.stdin) as keys,
        Live(frame(state), console=console, auto_refresh=False, screen=console.is_terminal) as live,
    ):
        next_frame = 0.0
        while not stop.is_set():
            if QUIT_KEYS & set(keys.pressed()):
                break
            answered = read_step(reader)
            if time.monotonic() >= next_frame:
                if answered:
                    reader.refresh_lag()
                live.update(frame(state), refresh=True)
                next_frame = time.monotonic() + refresh
            if not answered:
                stop.wait(refresh)


def export_text(state: DashboardState, width: int) -> str:
    """One frame as plain text, through rich's console recording."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(frame(state, footer=""))
    return console.export_text()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dashboard",
        description="Live view of the fraud detection topics. Settings come from the same "
        "environment variables as the services (KAFKA_BROKER_URL, TRANSACTIONS_TOPIC, "
        "LEGIT_TOPIC, FRAUD_TOPIC, DEAD_LETTER_TOPIC, CONSUMER_GROUP). Keys: q quits.",
    )
    parser.add_argument(
        "--once",
        type=float,
        metavar="SECONDS",
        help="read for SECONDS, print one frame as plain text, exit",
    )
    parser.add_argument("--width", type=int, default=100, help="columns for --once (100)")
    parser.add_argument(
        "--web",
        action="store_true",
        help="serve the view as a live page on http://DASHBOARD_HOST:DASHBOARD_PORT "
        "(127.0.0.1:8088) instead",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(DashboardSettings)
    except SettingsError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    if args.web:
        from dashboard.web import serve  # noqa: PLC0415 - web imports this module's reader

        return serve(settings)
    # Only warnings: log lines would tear through the live view.
    configure_logging("WARNING" if settings.log_level in ("DEBUG", "INFO") else settings.log_level)
    for name in LIBRARY_LOGGERS:  # their warnings would tear the live view
        logging.getLogger(name).setLevel(logging.ERROR)
    stop = StopFlag.install()
    try:
        admin = kafka.driver(settings).wait_for_broker(settings, stop, "dashboard")
    except BrokerUnavailableError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 1
    if admin is None:
        return 0
    admin.close()
    state = DashboardState(
        broker=settings.kafka_broker_url, group=settings.consumer_group, topics=topics_of(settings)
    )
    reader = TopicReader(settings, state)
    try:
        if args.once is not None:
            collect(reader, stop, args.once)
            sys.stdout.write(export_text(state, args.width))
        else:
            run_live(reader, stop, Console(), settings.dashboard_refresh_seconds)
    finally:
        reader.close()
    return 0
