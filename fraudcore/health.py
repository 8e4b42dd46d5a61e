"""Liveness: is the service's loop making progress? /health reports it beside the broker.

A loop can hang while the broker answers: inside a kafka-python call that never returns, in a
retry loop that never ends, or with a batch that is never committed. The loop says when it made
progress; /health answers 503 once it has not for longer than LIVENESS_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable


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
