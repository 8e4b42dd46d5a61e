"""The bound on a blocking transactional call (fraudcore/kafka/deadline.py), which both
adapters put around calls their library may never end."""

from __future__ import annotations

import threading
import time

import pytest

from fraudcore.errors import TransactionStalledError
from fraudcore.kafka.deadline import call_with_deadline


class RefusedError(Exception):
    pass


def _refuse() -> None:
    raise RefusedError("no")


def _wait(event: threading.Event) -> None:
    event.wait(10)


def test_a_call_that_ends_in_time_returns_or_raises_its_own_error() -> None:
    call_with_deadline(lambda: None, 1, "nothing")
    with pytest.raises(RefusedError):
        call_with_deadline(_refuse, 1, "failing")


def test_a_call_that_does_not_end_in_time_is_left_behind() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TransactionStalledError, match=r"stuck did not complete within 0\.2s"):
        call_with_deadline(lambda: _wait(release), 0.2, "stuck")
    assert time.monotonic() - started < 2
    release.set()
