"""Process plumbing: the stop flag wakes sleepers, and a signal during wait() cannot deadlock."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import weakref

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


class Node:
    """An object that can sit in a reference cycle, and be watched through a weak reference."""

    def __init__(self) -> None:
        self.partner: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    """Two objects that keep each other alive, so only the cycle collector can free them."""
    first, second = Node(), Node()
    first.partner, second.partner = second, first
    return first, weakref.ref(second)


def test_freeze_startup_heap_takes_existing_objects_out_of_collection() -> None:
    survivor = [object() for _ in range(100)]
    startup, startup_alive = cycle()  # built before the freeze, as start-up's objects are
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(survivor)
        del startup  # unreachable now, but frozen: the collector no longer looks at it
        gc.collect()
        assert startup_alive() is not None
        # The collector still works for what comes after: a cycle made after the freeze goes.
        later, later_alive = cycle()
        del later
        gc.collect()
        assert later_alive() is None
    finally:
        gc.unfreeze()  # leave the test process as it was
    gc.collect()
    assert startup_alive() is None  # unfrozen, the start-up cycle is collected as usual
