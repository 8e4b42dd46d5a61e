"""The bench's own jar broker (kafka/broker.sh) on free ports, and Kafka's own tools."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
BROKER_SCRIPT = REPO_ROOT / "kafka" / "broker.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """`with LocalBroker() as broker:` a single-node KRaft broker; its data dir is wiped after."""

    def __init__(self, log: Path | None = None) -> None:
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="fraud-bench-"))
        self.data_dir = self._root / "kafka-data"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log = log

    def _script(self, *args: str, timeout: float = 180) -> None:
        done = subprocess.run(
            [str(BROKER_SCRIPT), *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if self._log is not None:
            with self._log.open("a") as out:
                out.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"kafka/broker.sh {args[0]} failed:\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        self._script("up", "--port", str(self.port), "--controller-port", str(self.controller_port))

    def close(self) -> None:
        """Stop the broker and delete its data dir (and the temporary directory holding it)."""
        try:
            if self.data_dir.exists():
                try:
                    self._script("clean", timeout=120)
                except RuntimeError:  # e.g. `up` failed before it marked the dir as its own
                    self._script("down", timeout=120)
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
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


def run_tool(main_class: str, *args: str, timeout: float = 300) -> str:
    """Run a Kafka main class from the project's jars (kafka/broker.sh tool); its stdout."""
    done = subprocess.run(
        [str(BROKER_SCRIPT), "tool", main_class, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def kafka_version() -> str:
    jars = sorted((REPO_ROOT / "kafka" / "lib").glob("kafka-clients-*.jar"))
    return jars[0].stem.removeprefix("kafka-clients-") if jars else "unknown"
