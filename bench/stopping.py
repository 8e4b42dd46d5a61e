"""A stop flag that SIGTERM and SIGINT set, for the bench's own consumer processes.

Standard library only: bench/reference.py imports it in the reference venv, which has none of
the services' packages.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_flag() -> threading.Event:
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
