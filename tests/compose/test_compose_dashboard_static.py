"""Static checks of the dashboard page's compose service (profile `web`) and its healthcheck.

The service is built from the Dockerfile's `dashboard` stage (tests/compose/test_compose_static.py
checks the stage with the others); here: it starts only when asked for, it is published on
the host's loopback only, it reads the same topics as the detector, and its healthcheck asks
the page's own server.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any

import pytest

from dashboard.web import listen
from tests.compose.compose_files import REPO, as_str, environment_of, load_compose

APP_FILE = "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    services: dict[str, Any] = load_compose(APP_FILE)["services"]
    return services


def test_dashboard_is_behind_the_web_profile(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    assert dashboard.get("profiles") == ["web"], "a plain `up` must not start the page"
    assert dashboard["build"] == {"context": ".", "target": "dashboard"}
    assert dashboard.get("restart") == "unless-stopped"


def test_dashboard_is_published_on_localhost_only(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    ports = [str(port) for port in dashboard.get("ports", [])]
    assert len(ports) == 1, ports
    bind_ip, published, target = ports[0].split(":")
    assert bind_ip == "127.0.0.1", "the page must not listen on the host's every interface"
    assert published == "8088"
    env = environment_of(dashboard)
    # Inside the container it must listen where the published port arrives.
    assert as_str(env["DASHBOARD_HOST"]) == "0.0.0.0"  # noqa: S104 - the container's own
    assert as_str(env["DASHBOARD_PORT"]) == target


def test_dashboard_reads_what_the_detector_writes(services: dict[str, Any]) -> None:
    dashboard, detector = (
        environment_of(services["dashboard"]),
        environment_of(services["detector"]),
    )
    for name in (
        "KAFKA_BROKER_URL",
        "TRANSACTIONS_TOPIC",
        "LEGIT_TOPIC",
        "FRAUD_TOPIC",
        "DEAD_LETTER_TOPIC",
        "CONSUMER_GROUP",
    ):
        assert as_str(dashboard[name]) == as_str(detector[name]), name


def test_dashboard_healthcheck_runs_a_module_of_the_image(services: dict[str, Any]) -> None:
    check = services["dashboard"]["healthcheck"]
    assert check["test"] == ["CMD", "python", "-m", "dashboard.healthcheck"]
    assert importlib.util.find_spec("dashboard.healthcheck") is not None
    assert (REPO / "dashboard" / "healthcheck.py").is_file()


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboard.healthcheck"],
        env={**os.environ, "DASHBOARD_PORT": str(port)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_dashboard_healthcheck_fails_with_no_server_there() -> None:
    with listen("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
    done = _healthcheck(port)  # the port was free a moment ago: nothing answers there
    assert done.returncode == 1
    assert done.stderr.startswith("unhealthy:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
