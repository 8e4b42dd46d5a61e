"""Health: is the broker reachable, and is the service's loop making progress? GET /health.

  200 {"status": "ok", ...}           the broker answers (and the loop, if it reports, moves)
  503 {"status": "unavailable", ...}  the last probe failed, or none succeeded for
                                      STALE_AFTER_SECONDS (also until the first answer)
  503 {"status": "stuck", ...}        the broker answers but the loop made no progress

Served on METRICS_PORT beside /metrics, by one server (fraudcore/metrics_server.py).

The broker: a background thread asks it for its cluster metadata (one small request on one
connection of its own) every HEALTH_PROBE_INTERVAL_SECONDS, with a short timeout. The endpoint
only reads the last result, so it answers at once whatever state the broker is in, and reports
unavailable when the probe itself hangs. The probe's client is built with the same client
options as the service's own clients, so it goes where they go, with their security settings.

Liveness: a loop can hang while the broker answers: inside a kafka-python call that never
returns, in a retry loop that never ends, or with a batch that is never committed. The loop says
when it made progress; /health answers 503 once it has not for longer than
LIVENESS_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

HEALTH_PROBE_INTERVAL_SECONDS = 5.0
HEALTH_PROBE_TIMEOUT_MS = 3000
STALE_AFTER_SECONDS = 30.0
PROBE_THREAD = "health-probe"


class Liveness:
    """When the loop last came back from a poll, and since when its open batch is uncommitted.

    Not armed until the loop starts (`start()`), so the wait for the broker at start-up and a
    service without such a loop are never reported stuck. The loop's thread writes two floats;
    the health server's thread reads them: no lock is needed for that.
    """

    def __init__(self, bound_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound_seconds
        self._clock = clock
        self._last_beat: float | None = None
        self._open_since: float | None = None

    def start(self) -> None:
        self._last_beat = self._clock()

    def beat(self) -> None:
        """A poll returned (with records or without)."""
        self._last_beat = self._clock()

    def batch_opened(self) -> None:
        self._open_since = self._clock()

    def batch_closed(self) -> None:
        """The batch was committed, or aborted and its input rewound."""
        self._open_since = None

    def batch_ended(self, *_outcome: object) -> None:
        """A BatchObserver (fraudcore/checkpoint.py): however the batch ended, it is closed."""
        self.batch_closed()

    def problem(self) -> str | None:
        """Why the loop is taken as stuck, or None while it makes progress."""
        now = self._clock()
        beat, opened = self._last_beat, self._open_since
        reasons = []
        if beat is not None and now - beat > self.bound:
            reasons.append(f"no poll returned for {now - beat:.1f}s")
        if opened is not None and now - opened > self.bound:
            reasons.append(f"a batch has been open without a commit for {now - opened:.1f}s")
        return f"{'; '.join(reasons)} (bound {self.bound:g}s)" if reasons else None

    def report(self) -> dict[str, object]:
        now = self._clock()
        beat, opened = self._last_beat, self._open_since
        return {
            "alive": self.problem() is None,
            "last_poll_seconds_ago": None if beat is None else round(now - beat, 3),
            "batch_open_seconds": None if opened is None else round(now - opened, 3),
            "bound_seconds": self.bound,
            "error": self.problem(),
        }


class GaugeLike(Protocol):
    """What BrokerHealth needs of a gauge (prometheus_client's Gauge): set a value."""

    def set(self, value: float) -> None: ...


@dataclass(frozen=True)
class HealthStatus:
    healthy: bool
    body: dict[str, Any]


class BrokerHealth:
    """The broker's reachability as the last probe saw it; probes run on a daemon thread."""

    def __init__(
        self,
        service: str,
        probe: Callable[[], None],
        *,
        interval: float = HEALTH_PROBE_INTERVAL_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
        gauge: GaugeLike | None = None,
        clock: Callable[[], float] = time.monotonic,
        liveness: Liveness | None = None,
    ) -> None:
        self.service = service
        self.liveness = liveness  # the loop's progress, when the service reports it
        self._probe = probe
        self._interval = interval
        self._stale_after = stale_after
        self._gauge = gauge
        self._clock = clock
        self._lock = threading.Lock()
        self._ok_at: float | None = None
        self._checked_at: float | None = None
        self._error: str | None = "no probe yet"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_once(self) -> bool:
        """Probe now and record the outcome. Never raises."""
        error: str | None = None
        try:
            self._probe()
        except Exception as exc:  # any failure means: not reachable
            error = f"{type(exc).__name__}: {exc}"[:300]
        ok = error is None
        now = self._clock()
        with self._lock:
            was_ok = self._error is None
            self._checked_at = now
            self._error = error
            if ok:
                self._ok_at = now
        if self._gauge is not None:
            self._gauge.set(1 if ok else 0)
        if ok and not was_ok:
            log.info("health: Kafka broker reachable")
        elif was_ok and not ok:
            log.warning("health: Kafka broker unreachable: %s", error)
        return ok

    def status(self) -> HealthStatus:
        """Healthy while the broker answers and the loop (if it reports) makes progress."""
        now = self._clock()
        with self._lock:
            ok_at, checked_at, error = self._ok_at, self._checked_at, self._error
        stale = ok_at is None or now - ok_at > self._stale_after
        reachable = error is None and not stale
        if error is None and stale:
            error = f"no successful probe for {self._stale_after:g}s"
        body: dict[str, Any] = {
            "status": "ok" if reachable else "unavailable",
            "service": self.service,
            "broker": {
                "reachable": reachable,
                "checked_seconds_ago": _age(now, checked_at),
                "last_ok_seconds_ago": _age(now, ok_at),
                "error": error,
            },
        }
        alive = True
        if self.liveness is not None:
            body["loop"] = self.liveness.report()
            alive = body["loop"]["alive"]
            if reachable and not alive:
                body["status"] = "stuck"
        return HealthStatus(reachable and alive, body)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=PROBE_THREAD, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            self.check_once()
            self._stop.wait(max(0.0, self._interval - (self._clock() - started)))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


class QuietProbeLogs(logging.Filter):
    """Drops kafka-python's own log lines from the probe's threads.

    While the broker is down, the service's own clients already log every failed connection;
    the probe would log each of them a second time. It reports its state once instead
    ("health: Kafka broker unreachable: ..." and "... reachable").
    """

    def __init__(self, io_thread: str, loggers: tuple[str, ...]) -> None:
        """`io_thread`: the probe client's I/O thread; `loggers`: the client library's."""
        super().__init__()
        self._threads = (PROBE_THREAD, io_thread)
        self._loggers = loggers

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.threadName in self._threads
        return not (ours and record.name.split(".")[0] in self._loggers)


def health_app(health: BrokerHealth | None, service: str) -> WSGIApplication:
    """GET /health as a WSGI application: the status as JSON, 200 when healthy, else 503.
    Without a BrokerHealth (nothing to probe) it is always ok."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        status = (
            health.status()
            if health is not None
            else HealthStatus(True, {"status": "ok", "service": service})
        )
        body = json.dumps(status.body, separators=(",", ":")).encode() + b"\n"
        code = HTTPStatus.OK if status.healthy else HTTPStatus.SERVICE_UNAVAILABLE
        return reply(start_response, code, "application/json", body)

    return app


def reply(
    start_response: StartResponse, code: HTTPStatus, content_type: str, body: bytes
) -> list[bytes]:
    """One whole WSGI response: status line, Content-Type and Content-Length, the body."""
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(f"{code.value} {code.phrase}", headers)
    return [body]
