"""Liveness: when the loop counts as stuck (fraudcore/health.py), on a clock the test moves."""

from __future__ import annotations

from fraudcore.health import Liveness
from tests.fakes import FakeClock


def test_a_loop_that_has_not_started_is_never_stuck() -> None:
    clock = FakeClock()
    liveness = Liveness(5, clock)
    clock.now += 1000  # e.g. the wait for the broker at start-up
    assert liveness.problem() is None


def test_a_loop_whose_polls_stop_returning_is_stuck_after_the_bound() -> None:
    clock = FakeClock()
    liveness = Liveness(5, clock)
    liveness.start()
    clock.now += 5
    assert liveness.problem() is None
    clock.now += 0.1
    assert liveness.problem() == "no poll returned for 5.1s (bound 5s)"
    liveness.beat()
    assert liveness.problem() is None
    assert liveness.report()["alive"] is True


def test_a_batch_never_committed_is_stuck_although_polls_return() -> None:
    clock = FakeClock()
    liveness = Liveness(5, clock)
    liveness.start()
    liveness.batch_opened()
    for _ in range(6):
        clock.now += 1
        liveness.beat()
    assert liveness.problem() == "a batch has been open without a commit for 6.0s (bound 5s)"
    assert liveness.report()["batch_open_seconds"] == 6.0
    liveness.batch_closed()
    assert liveness.problem() is None
