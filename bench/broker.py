"""The bench's own jar broker (devtools.broker.JarBroker) in a temporary directory, and Kafka's
own tools from the project's jars."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from devtools.broker import BROKER_SCRIPT, REPO_ROOT, JarBroker


class LocalBroker(JarBroker):
    """`with LocalBroker() as broker:` a single-node KRaft broker; its data dir is wiped after,
    with the temporary directory that holds it."""

    def __init__(self, log: Path | None = None) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="fraud-bench-"))
        super().__init__(self._root / "kafka-data", log)

    def close(self) -> None:
        try:
            super().close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


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
