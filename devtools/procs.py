"""A child process with its output in a log file: how the tests and the bench run the services.

The one process runner both share. tests/kafka_helpers.Service adds the tests' defaults (the
whole environment, stats every second); bench/procs.Process adds the bench's (a clean
environment, a registry for stop_all, a run that overruns its timeout is killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from devtools.broker import REPO_ROOT


class Process:
    """`args` run from the repository root with exactly `env`; stdout and stderr go to `log_path`.

    `wait()` and `stop()` return the exit code, or raise subprocess.TimeoutExpired and leave the
    process running: the caller decides what a process that overruns means (kill() it).
    """

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            args, env=dict(env), cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @classmethod
    def python_module(
        cls, module: str, args: list[str], env: Mapping[str, str], log_path: Path
    ) -> Self:
        """python -m `module` `args`, with the interpreter that runs this."""
        return cls([sys.executable, "-m", module, *args], env, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self, timeout: float) -> int:
        """SIGTERM, as Docker and systemd stop a service; the exit code it gave."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if it still runs (also when it is paused), and reap it."""
        if self.running():
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()

    def pause(self) -> None:
        """SIGSTOP: the process is frozen, its sockets stay open, its clock does not stop."""
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.popen.send_signal(signal.SIGCONT)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def output_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    # What it uses, from /proc (Linux): the bench's memory and CPU figures.

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


def _status_kib(pid: int, field: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
