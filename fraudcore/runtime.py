"""Process plumbing shared by both services: logging, stop signals, the periodic stats line."""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

log = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, clients, settings) out of the garbage collector's scans.

    Called once, just before a service's loop. A full collection then walks only what the loop
    itself keeps alive, not the hundreds of thousands of objects of the imported libraries, so
    its pauses (latency spikes, CPU per record) shrink. Frozen objects are never freed; start-up
    objects live for the whole process anyway. What it gains shows in `make bench`'s latency
    rows.
    """
    gc.collect()
    gc.freeze()


HUMAN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601, ms), level, logger, message, and
    exception (the formatted traceback) when there is one. Newlines inside stay escaped."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# The Kafka client libraries' loggers (kafka-python's, and confluent-kafka's as its adapter names
# it). kafka-python logs every lost connection, reconnect attempt and coordinator lookup, each at
# WARNING or ERROR and some with a traceback: hundreds of lines for one routine broker failover.
LIBRARY_LOGGERS = ("kafka", "confluent_kafka")


def _is_library_logger(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in LIBRARY_LOGGERS)


class ClientLogLimit(logging.Filter):
    """On the handler: at most one line of the client library per `every` seconds (0: no
    limit), telling how many were dropped since the last one; a connection error's traceback
    becomes its one-line repr. Our own lines pass untouched."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._next_at = float("-inf")
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_library_logger(record.name):
            return True
        if record.exc_info and isinstance(record.exc_info[1], OSError):
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
            record.args, record.exc_info, record.exc_text = None, None, None
        now = self._clock()
        if self._every > 0 and now < self._next_at:
            self._dropped += 1
            return False
        self._next_at = now + self._every
        if self._dropped:
            record.msg = f"{record.getMessage()} ({self._dropped} more client lines dropped)"
            record.args, self._dropped = None, 0
        return True


def configure_logging(
    level: str, log_format: str = "human", client_level: str = "WARNING", client_every: float = 0
) -> None:
    """Lines on stderr, human-readable or JSON. The client libraries' own lines: from
    `client_level` up (never below `level`), at most one per `client_every` seconds."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN_FORMAT)
    )
    # On the handler, not the logger: a logger's filters never see its children's records.
    handler.addFilter(ClientLogLimit(client_every))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    client_threshold = max(logging.getLevelName(client_level), logging.getLevelName(level))
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(client_threshold)


class StopFlag:
    """Set by SIGTERM or SIGINT. The handler only sets a flag; loops check it and wind down.

    A plain attribute rather than a threading.Event: Event.set() takes a lock that the main
    thread may already hold inside Event.wait() when the signal arrives, which deadlocks.
    """

    # How often wait() looks at the flag: the most a stop request can be noticed late.
    CHECK_INTERVAL = 0.02

    def __init__(self) -> None:
        self._stopping = False

    @classmethod
    def install(cls) -> StopFlag:
        flag = cls()
        signal.signal(signal.SIGTERM, flag._handle)
        signal.signal(signal.SIGINT, flag._handle)
        return flag

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def set(self) -> None:
        self._stopping = True

    def is_set(self) -> bool:
        return self._stopping

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on stop. Returns True when stopping."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, self.CHECK_INTERVAL))
        return self._stopping


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
