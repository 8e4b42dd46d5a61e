"""The container engine and the Compose CLI, as the Docker tier's tests drive them.

`make test-docker` runs scripts/docker-tier.sh first, which exports what is used here:
DOCKER_HOST and DOCKER_CONFIG (the engine and the pinned Compose CLI plugin),
FRAUD_DOCKER_TIER_ENGINE (`docker`, or `podman` serving the Docker API), and
FRAUD_DOCKER_TIER_BASE (`registry`, or `stand-in` where the Dockerfile's base image is made
from Debian's packages because no registry is reachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.compose.compose_files import REPO, read_dotenv

COMPOSE_VERSION = "v5.6.0"  # scripts/docker-tier.sh builds and installs this one
HERE = Path(__file__).resolve().parent
HOST_NETWORK_OVERRIDE = HERE / "compose.host-network.yml"
IMAGES_OVERRIDE = HERE / "compose.images.yml"
APP_FILE = REPO / "docker-compose.yml"


def engine() -> str:
    """`docker` when the Docker daemon runs the containers, otherwise `podman`."""
    return os.environ.get("FRAUD_DOCKER_TIER_ENGINE", "docker")


def stand_in_base() -> bool:
    return os.environ.get("FRAUD_DOCKER_TIER_BASE") == "stand-in"


class CommandError(AssertionError):
    """A docker or compose command that had to succeed did not; the message has its output."""


def run(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args),
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise CommandError(
            f"{' '.join(args)} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(["docker", *args], timeout=timeout, check=check)


def inspect(container: str) -> dict[str, Any]:
    out = docker("inspect", container)
    (info,) = json.loads(out.stdout)
    result: dict[str, Any] = info
    return result


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Compose:
    """`docker compose --project-name <unique> -f ... <command>` with its own variables.

    The variables are .env's, then `env`: given explicitly, so that what a developer exported
    in the shell cannot change a test (compose prefers the shell's to .env's).
    """

    project: str
    files: Sequence[Path] = (APP_FILE,)
    env: dict[str, str] = field(default_factory=dict)
    profiles: Sequence[str] = ()

    def argv(self, *args: str) -> list[str]:
        cmd = ["docker", "compose", "--project-name", self.project]
        for file in self.files:
            cmd += ["--file", str(file)]
        for profile in self.profiles:
            cmd += ["--profile", profile]
        return [*cmd, *args]

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), {**read_dotenv(), **self.env}, timeout, check)

    def config(self) -> dict[str, Any]:
        """The project as the Compose CLI resolves it: files merged, variables interpolated,
        and each literal `$` as the engine gets it (`config` prints it as `$$`, so that its
        output is a compose file again)."""
        model: dict[str, Any] = unescape(json.loads(self.run("config", "--format", "json").stdout))
        return model

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """`ps --all` of the project (or of one service), one dict per container."""
        args = ["ps", "--all", "--format", "json", *([service] if service else [])]
        out = self.run(*args).stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            rows: list[dict[str, Any]] = json.loads(out)
            return rows
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def container_ids(self, service: str) -> list[str]:
        return [str(row["ID"]) for row in self.containers(service)]

    def logs(self, *services: str, tail: int = 80) -> str:
        out = self.run("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return out.stdout + out.stderr

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)


def unescape(node: Any) -> Any:
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, dict):
        return {key: unescape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [unescape(value) for value in node]
    return node


def app_stack_files() -> list[Path]:
    """docker-compose.yml with the test-only overrides: host network, the session's images."""
    return [APP_FILE, HOST_NETWORK_OVERRIDE, IMAGES_OVERRIDE]


def healthcheck_passes(container: str, timeout: float = 120) -> tuple[bool, str]:
    """The engine runs the container's own healthcheck (what `docker inspect` shows it has).

    Docker runs healthchecks by itself: wait, bounded, for `healthy`. podman 4.3 without systemd
    never does, so run it once through podman, which is what its timer would run.
    """
    if engine() == "podman":
        done = run(["podman", "healthcheck", "run", container], timeout=60, check=False)
        return done.returncode == 0, (done.stdout + done.stderr).strip()
    deadline = time.monotonic() + timeout
    while True:
        health = inspect(container)["State"].get("Health") or {}
        if health.get("Status") == "healthy":
            return True, json.dumps(health.get("Log", [])[-1:])
        if time.monotonic() > deadline:
            return False, json.dumps(health)
        time.sleep(2)


def wait_for(what: str, probe: Any, timeout: float, interval: float = 1.0) -> Any:
    """Poll `probe` until it returns something truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
