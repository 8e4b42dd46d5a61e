"""The services (and baselines) run as processes of their own, as a user runs them.

devtools.procs.Process is the runner; the bench adds its environment, a registry of what it
started (stop_all, after an error or Ctrl-C), and that a run overrunning its timeout is killed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from devtools import procs

# Settings the bench always gives the services; METRICS_PORT is dropped so runs never clash.
SERVICE_DEFAULTS = {
    "PYTHONUNBUFFERED": "1",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "human",
    "STATS_INTERVAL_SECONDS": "5",
    "BROKER_WAIT_SECONDS": "60",
}
DROPPED = ("METRICS_PORT",)

_STARTED: list[Process] = []


def service_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    env.update(SERVICE_DEFAULTS)
    env.update(overrides)
    return env


class Process(procs.Process):
    """A child process of the bench: stopped by stop_all(), killed when it overruns wait()."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(args, env, log_path)
        _STARTED.append(self)

    def wait(self, timeout: float) -> int:
        try:
            return super().wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.args} did not finish within {timeout:g}s") from None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the services flush, commit and exit 0), SIGKILL after `timeout`."""
        return super().stop(timeout)


def stop_all() -> None:
    """Stop every child process still running (after an error or Ctrl-C)."""
    while _STARTED:
        process = _STARTED.pop()
        if process.running():
            try:
                process.stop(timeout=15)
            except RuntimeError:
                process.kill()
