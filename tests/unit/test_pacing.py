"""Pacing with an injected clock: the absolute schedule never drifts."""

from __future__ import annotations

import pytest

from fraudcore.core.pacing import Pacer
from tests.fakes import FakeClock


def test_first_record_is_due_at_once() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock)
    assert pacer.due() == 1
    assert pacer.due() == 0
    assert pacer.seconds_until_next() == pytest.approx(0.1)


def test_rate_is_exact_over_time_whatever_the_polling_pattern() -> None:
    clock = FakeClock()
    pacer = Pacer(1000, clock)
    sent = 0
    # Irregular polling, including long stalls, as when the producer blocks.
    for step in [0.0003, 0.0017, 0.25, 0.001, 1.3, 0.0001] * 100:
        clock.now += step
        sent += pacer.due()
    elapsed = clock.now - 1000.0
    assert sent == int(elapsed * 1000) + 1


def test_slow_sends_do_not_lower_the_rate() -> None:
    # sleep(1/rate) after each send would run slow by the send time; the schedule does not.
    clock = FakeClock()
    pacer = Pacer(100, clock)
    sent = 0
    while clock.now < 1010.0:
        count = pacer.due()
        sent += count
        clock.now += 0.004 * count  # each send costs 4 ms
        clock.now += pacer.seconds_until_next()
    assert sent == pytest.approx(1000, abs=2)


def test_bursts_are_capped() -> None:
    clock = FakeClock()
    pacer = Pacer(1_000_000, clock, max_burst=500)
    clock.now += 10
    assert pacer.due() == 500
    assert pacer.issued == 500


@pytest.mark.parametrize("rate", [0, -5, float("inf"), float("nan")])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive finite"):
        Pacer(rate, FakeClock())
