"""Pacing on an absolute schedule.

Record n is due at start + n / rate. Because the schedule never drifts with the time spent
producing, the achieved rate converges on the target instead of running slow like
`sleep(1 / rate)` after each send.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class Pacer:
    """Tells how many records are due now and how long to wait for the next one."""

    def __init__(self, rate: float, clock: Callable[[], float], max_burst: int = 10_000) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive finite number, got {rate}")
        self.rate = rate
        self._clock = clock
        self._max_burst = max_burst
        self._start = clock()
        self._issued = 0

    @property
    def issued(self) -> int:
        return self._issued

    def due(self) -> int:
        """Claim the records whose time has come (at most max_burst at once) and return how many."""
        # The epsilon keeps float rounding from holding back a record that is due exactly now.
        owed = math.floor((self._clock() - self._start) * self.rate + 1e-9) + 1 - self._issued
        claimed = max(0, min(owed, self._max_burst))
        self._issued += claimed
        return claimed

    def seconds_until_next(self) -> float:
        """How long until the next record is due (0 when it already is)."""
        next_due = self._start + self._issued / self.rate
        return max(0.0, next_due - self._clock())
