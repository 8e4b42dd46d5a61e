"""Process plumbing: the stop flag wakes sleepers, and a signal during wait() cannot deadlock."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

from fraudcore.runtime import StopFlag, freeze_startup_heap


def test_wait_returns_false_after_the_timeout() -> None:
    flag = StopFlag()
    started = time.monotonic()
    assert flag.wait(0.1) is False
    assert time.monotonic() - started >= 0.1


def test_set_from_another_thread_wakes_wait_early() -> None:
    flag = StopFlag()
    threading.Timer(0.1, flag.set).start()
    started = time.monotonic()
    assert flag.wait(10) is True
    assert time.monotonic() - started < 2


def test_sigterm_during_wait_stops_it() -> None:
    # With a threading.Event this could deadlock: the handler's set() needs the lock that
    # wait() holds. Repeat to give the signal many chances to land inside wait().
    previous = signal.getsignal(signal.SIGTERM)
    try:
        for _ in range(50):
            flag = StopFlag.install()
            threading.Timer(0.005, os.kill, (os.getpid(), signal.SIGTERM)).start()
            assert flag.wait(5) is True
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_freeze_startup_heap_takes_existing_objects_out_of_collection() -> None:
    survivor = [object() for _ in range(100)]
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(survivor)
        assert gc.collect() >= 0  # the collector still works for what comes after
    finally:
        gc.unfreeze()  # leave the test process as it was
