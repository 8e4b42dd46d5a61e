"""The services (and baselines) run as processes of their own, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.broker import REPO_ROOT

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


class Process:
    """A child process with its output in a log file; `peak_rss_mb` reads /proc/<pid>/status."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            args, env=dict(env), cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        _STARTED.append(self)

    @classmethod
    def python_module(
        cls, module: str, args: list[str], env: Mapping[str, str], log: Path
    ) -> Process:
        return cls([sys.executable, "-m", module, *args], env, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def peak_rss_mb(self) -> float | None:
        """VmHWM (the peak resident set) of the process, in MiB; None once it has exited."""
        return _status_kib(self.pid, "VmHWM")

    def rss_mb(self) -> float | None:
        return _status_kib(self.pid, "VmRSS")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process used so far (all its threads); None once exited."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        # fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"{self.args} did not finish within {timeout:g}s") from None
        finally:
            self._log.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the services flush, commit and exit 0), SIGKILL after `timeout`."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running():
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()

    def output_tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def stop_all() -> None:
    """Stop every child process still running (after an error or Ctrl-C)."""
    while _STARTED:
        process = _STARTED.pop()
        if process.running():
            try:
                process.stop(timeout=15)
            except RuntimeError:
                process.kill()


def _status_kib(pid: int, field: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
