"""The broker a test session runs against: given by env, in Docker, or from the project's jars.

The jar broker is devtools.broker.JarBroker, the one the bench starts too; free_port and
BROKER_SCRIPT are its own, named here as well for the tests that import them from this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devtools.broker import BROKER_SCRIPT, REPO_ROOT, JarBroker, free_port, java_available

__all__ = [
    "BROKER_SCRIPT",
    "Broker",
    "compose_kafka_image",
    "docker_engine_available",
    "free_port",
    "start_broker",
    "start_jar_broker",
]


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
    _jar: JarBroker | None = field(default=None, repr=False)
    _container: object = field(default=None, repr=False)

    @property
    def restartable(self) -> bool:
        return self._jar is not None

    def _own_jar(self) -> JarBroker:
        if self._jar is None:
            raise RuntimeError(f"a {self.kind} broker cannot be stopped and started by the tests")
        return self._jar

    def start(self) -> None:
        self._own_jar().start()

    def stop(self) -> None:
        self._own_jar().stop()

    def close(self) -> None:
        if self._jar is not None:
            self._jar.close()  # down, then wipe its data dir
        elif self.kind == "docker":
            self._container.stop()  # type: ignore[attr-defined]


def compose_kafka_image() -> str:
    """The image users get from docker-compose.kafka.yml, so Docker tests run the same Kafka."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.kafka.yml").read_text())
    return str(compose["services"]["broker"]["image"])


def start_jar_broker(data_dir: Path) -> Broker:
    """A broker from the project's jars on free ports, with its data in `data_dir`."""
    jar = JarBroker(data_dir)
    jar.start()
    return Broker(bootstrap=jar.bootstrap, kind="jar", _jar=jar)


def start_broker(tmp_root: Path) -> Broker:
    """TEST_KAFKA_BROKER_URL if set; else the jar broker on free ports; else Docker if no Java."""
    given = os.environ.get("TEST_KAFKA_BROKER_URL")
    if given:
        return Broker(bootstrap=given, kind="env")
    if not java_available() and docker_engine_available():
        from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(compose_kafka_image()).with_kraft()
        container.start()
        return Broker(
            bootstrap=container.get_bootstrap_server(), kind="docker", _container=container
        )
    return start_jar_broker(tmp_root / "kafka-data")
