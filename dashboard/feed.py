"""One Kafka reader for every viewer of the page (`python -m dashboard --web`).

A thread owns the terminal view's reader and model (dashboard/app.py, dashboard/model.py) and
runs their loop: read, refresh the lag once a second, and turn the model's view into one JSON
frame, which it hands to `publish`. The web server sends that one frame to every open page, so
a tenth open tab costs no Kafka consumer, only a copy of a string.

The frame is the DashboardView as JSON, plus what only the page shows: whether the broker
answers, the rates of the last HISTORY_SECONDS (one sample a second, for the chart), and how
many readers are open (always 0 or 1; the tests check it with many pages open).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from dashboard.app import TopicReader, _clock_text, open_reader, read_step, topics_of
from dashboard.config import DashboardSettings
from dashboard.model import ROLES, DashboardState, DashboardView

log = logging.getLogger(__name__)

HISTORY_SECONDS = 300  # the chart's span: the last 5 minutes
RETRY_SECONDS = 1.0  # how soon a reader is opened again while the broker is away


def frame_json(
    view: DashboardView,
    broker_up: bool,
    history: list[list[float]],
    readers: int,
    now: float,
    *,
    refresh_seconds: float = 1.0,
) -> str:
    """One frame for the page: the view as the terminal draws it, and the page's extras."""
    data: dict[str, Any] = asdict(view)
    data.update(
        lag_total=view.lag_total,
        broker_up=broker_up,
        roles=list(ROLES),
        history=history,  # [second, rate of each role in ROLES order], oldest first
        readers=readers,
        generated_at=now,
        refresh_seconds=refresh_seconds,  # the page waits a few of these before it worries
    )
    return json.dumps(data, separators=(",", ":"))


class Feed:
    """The reading thread. `publish` is called from that thread with each frame (a JSON text)."""

    def __init__(self, settings: DashboardSettings, publish: Callable[[str], None]) -> None:
        self.settings = settings
        self.refresh_seconds = settings.dashboard_refresh_seconds
        self.state = DashboardState(
            broker=settings.kafka_broker_url,
            group=settings.consumer_group,
            topics=topics_of(settings),
        )
        self.readers_open = 0
        self._broker_up: bool | None = None  # as last published, for the log's one-liners
        self.readers_opened = 0
        self._history: deque[list[float]] = deque(maxlen=HISTORY_SECONDS)
        self._publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        reader: TopicReader | None = None
        next_frame = 0.0
        try:
            while not self._stop.is_set():
                if reader is None:
                    reader = self._open()
                    if reader is None:
                        self._frame(broker_up=False)
                        self._stop.wait(RETRY_SECONDS)
                        continue
                answered = read_step(reader)
                if time.monotonic() >= next_frame:
                    next_frame = time.monotonic() + self.refresh_seconds
                    if answered:
                        reader.refresh_lag()  # clears the status once the broker answers again
                    self._frame(broker_up=answered and not self.state.status)
                if not answered:
                    self._stop.wait(RETRY_SECONDS)
        except Exception:
            log.exception("the dashboard's reader stopped")
            self.state.status = "the dashboard's reader stopped; see the server's log"
            self._frame(broker_up=False)
            raise
        finally:
            if reader is not None:
                reader.close()
                self.readers_open -= 1

    def _open(self) -> TopicReader | None:
        reader = open_reader(self.settings, self.state)
        if reader is not None:
            self.readers_open += 1
            self.readers_opened += 1
            log.info("reading %s", ", ".join(reader.topics.values()))
        return reader

    def _frame(self, broker_up: bool) -> None:
        if broker_up != self._broker_up:
            if broker_up:
                log.info("broker at %s answers", self.settings.kafka_broker_url)
            else:
                log.warning("%s", self.state.status or "the broker is not answering")
            self._broker_up = broker_up
        now = time.time()
        self.state.forget_before(now)
        view = self.state.view(now, _clock_text(now))
        sample = [int(now), *(round(view.rates[role], 3) for role in ROLES)]
        if self._history and self._history[-1][0] == sample[0]:
            self._history[-1] = sample  # one sample a second, the newest
        else:
            self._history.append(sample)
        history = list(self._history)
        self._publish(
            frame_json(
                view,
                broker_up,
                history,
                self.readers_open,
                now,
                refresh_seconds=self.refresh_seconds,
            )
        )
