"""Small stand-ins that unit tests share: a clock moved by hand, a probe that can fail."""

from __future__ import annotations


class FakeClock:
    """For code that takes `clock=` (time.monotonic's shape)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlakyProbe:
    """A broker probe for BrokerHealth: succeeds while `up`, counts its calls."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("connection refused")
