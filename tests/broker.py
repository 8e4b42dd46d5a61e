"""The broker a test session runs against: given by env, in Docker, or from the project's jars."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.kafka_helpers import REPO_ROOT

BROKER_SCRIPT = REPO_ROOT / "kafka" / "broker.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclass
class Broker:
    """A running broker. Only a jar broker can be stopped and started again (outage tests)."""

    bootstrap: str
    kind: str
    data_dir: Path | None = None
    port: int = 0
    controller_port: int = 0
    _container: object = field(default=None, repr=False)

    @property
    def restartable(self) -> bool:
        return self.kind == "jar"

    def _script(self, *args: str) -> None:
        assert self.data_dir is not None
        subprocess.run(
            [str(BROKER_SCRIPT), *args, "--data-dir", str(self.data_dir)],
            check=True,
            timeout=180,
            capture_output=True,
        )

    def start(self) -> None:
        self._script("up", "--port", str(self.port), "--controller-port", str(self.controller_port))

    def stop(self) -> None:
        self._script("down")

    def close(self) -> None:
        if self.kind == "jar":
            self._script("clean")
        elif self.kind == "docker":
            self._container.stop()  # type: ignore[attr-defined]


def compose_kafka_image() -> str:
    """The image users get from docker-compose.kafka.yml, so Docker tests run the same Kafka."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.kafka.yml").read_text())
    return str(compose["services"]["broker"]["image"])


def start_jar_broker(data_dir: Path) -> Broker:
    """A broker from the project's jars on free ports, with its data in `data_dir`."""
    port = free_port()
    broker = Broker(
        bootstrap=f"127.0.0.1:{port}",
        kind="jar",
        data_dir=data_dir,
        port=port,
        controller_port=free_port(),
    )
    broker.start()
    return broker


def start_broker(tmp_root: Path) -> Broker:
    """TEST_KAFKA_BROKER_URL if set; else the jar broker on free ports; else Docker if no Java."""
    given = os.environ.get("TEST_KAFKA_BROKER_URL")
    if given:
        return Broker(bootstrap=given, kind="env")
    if shutil.which("java") is None and docker_engine_available():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(compose_kafka_image()).with_kraft()
        container.start()
        return Broker(
            bootstrap=container.get_bootstrap_server(), kind="docker", _container=container
        )
    return start_jar_broker(tmp_root / "kafka-data")
