"""Process plumbing shared by both services: logging, stop signals, the periodic stats line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Human-readable lines on stderr; kafka-python's own chatter only from WARNING up."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))


class StopFlag:
    """Set by SIGTERM or SIGINT. The handler only sets the flag; loops check it and wind down."""

    def __init__(self) -> None:
        self._event = threading.Event()

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        signal.signal(signal.SIGTERM, flag._handle)
        signal.signal(signal.SIGINT, flag._handle)
        return flag

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on stop. Returns True when stopping."""
        return self._event.wait(seconds)


class StatsLine:
    """Counts events and logs one summary line every `interval` seconds, never one per record."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        render: Callable[[Counter[str], float], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.totals: Counter[str] = Counter()
        self._logger = logger
        self._interval = interval
        self._render = render
        self._clock = clock
        self._last_at = clock()
        self._last_totals: Counter[str] = Counter()

    def add(self, name: str, count: int = 1) -> None:
        self.totals[name] += count

    def maybe_log(self, force: bool = False) -> None:
        now = self._clock()
        elapsed = now - self._last_at
        if not force and elapsed < self._interval:
            return
        window = self.totals - self._last_totals
        self._logger.info(
            self._render(window, max(elapsed, 1e-9)) + " | totals " + _fmt(self.totals)
        )
        self._last_at = now
        self._last_totals = self.totals.copy()


def _fmt(counts: Counter[str]) -> str:
    return " ".join(f"{name}={count}" for name, count in sorted(counts.items()))
