"""`docker compose up` without Docker: each compose service's own command, with the compose
file's own environment, run as a local process against the test broker.

Two things are mapped, as Docker would: the broker's host name (broker:9092 -> the test broker),
and METRICS_PORT, which each container has to itself but local processes share, so each gets a
free port. Everything else is what users get from docker-compose.yml, .env and the Dockerfile's
CMD; the compose healthcheck command then runs against each service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.broker import free_port
from tests.compose.compose_files import REPO, environment_of, load_compose
from tests.compose.dockerfile import target_cmd
from tests.kafka_helpers import Service, consume, run_command, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPOSE_BROKER = "broker:9092"


def dockerfile_cmd(service: dict[str, Any]) -> list[str]:
    """The exec-form CMD of the service's stage of the Dockerfile, with `python` as this
    interpreter."""
    build = service["build"]
    dockerfile = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
    command = target_cmd(build["target"], dockerfile)
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def service_env(service: dict[str, Any], bootstrap: str) -> dict[str, str]:
    env = {k: str(v) for k, v in environment_of(service).items() if v not in (None, "")}
    assert env["KAFKA_BROKER_URL"] == COMPOSE_BROKER
    env["KAFKA_BROKER_URL"] = bootstrap
    if "METRICS_PORT" in env:
        env["METRICS_PORT"] = str(free_port())
    return env


def healthcheck_passes(service: dict[str, Any], env: dict[str, str]) -> bool:
    """Run the service's compose healthcheck command (CMD form) with its environment."""
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    done = subprocess.run(
        [sys.executable, *test[2:]],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


def test_compose_services_run_as_local_processes(bootstrap: str, tmp_path: Path) -> None:
    compose = load_compose("docker-compose.yml")
    processes, envs = {}, {}
    for name in ("detector", "generator"):
        service = compose["services"][name]
        envs[name] = service_env(service, bootstrap)
        processes[name] = Service(dockerfile_cmd(service), envs[name], tmp_path / f"{name}.log")
    fraud, legit = envs["detector"]["FRAUD_TOPIC"], envs["detector"]["LEGIT_TOPIC"]
    try:
        wait_until(
            lambda: len(consume(bootstrap, [fraud], 20, timeout=2)) >= 20,
            timeout=90,
            what="20 fraud transactions from the compose services",
        )
        for name, process in processes.items():
            assert process.running(), f"{name} exited:\n{process.output()}"
            check = compose["services"][name], envs[name]
            wait_until(lambda: healthcheck_passes(*check), 30, f"{name} healthy")  # noqa: B023
    finally:
        codes = {name: process.stop(timeout=20) for name, process in processes.items()}
    assert codes == {"detector": 0, "generator": 0}, {n: p.output() for n, p in processes.items()}

    fraud_amounts = [json.loads(r.value)["amount"] for r in consume(bootstrap, [fraud], 20)]
    legit_amounts = [json.loads(r.value)["amount"] for r in consume(bootstrap, [legit], 20)]
    assert len(fraud_amounts) >= 20
    assert len(legit_amounts) >= 20
    assert min(fraud_amounts) > 900
    assert max(legit_amounts) <= 900

    # The README's check: make consume of the fraud topic prints only amounts over 900.
    done = run_command(
        ["make", "--no-print-directory", "consume", f"TOPIC={fraud}", "MAX=20"],
        {**os.environ, "KAFKA_BROKER_URL": bootstrap},
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line)["amount"] for line in done.stdout.splitlines()]
    assert len(printed) == 20
    assert all(amount > 900 for amount in printed)
