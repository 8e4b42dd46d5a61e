"""The images `docker compose build` makes from the project's Dockerfile, inspected and run.

Where no registry is reachable (FRAUD_DOCKER_TIER_BASE=stand-in) the base image is the
stand-in of scripts/docker-tier.sh, not the official python image: these tests check our
Dockerfile, .dockerignore and compose build settings, not the official image.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.compose.compose_files import REPO
from tests.docker.conftest import SERVICES
from tests.docker.engine import docker, inspect, stand_in_base, unique

pytestmark = pytest.mark.docker

APP_UID = "10001"


def _context_files(*paths: str) -> set[str]:
    """The files under `paths` that the build context holds: tracked or not, but not ignored
    by git (a clean clone has the tracked ones only), and present."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return {line for line in out.stdout.splitlines() if line.strip() and (REPO / line).is_file()}


def _run(image: str, *command: str, user: str = "") -> subprocess.CompletedProcess[str]:
    """`docker run` of a one-off command; the container is removed afterwards. Not with
    `--rm`: through podman's Docker API the CLI then reports exit status 0 whatever it was."""
    name = unique("fraudtest-run")
    try:
        as_user = ["--user", user] if user else []
        return docker(
            "run",
            "--name",
            name,
            "--network",
            "host",
            *as_user,
            image,
            *command,
            timeout=120,
            check=False,
        )
    finally:
        docker("rm", "--force", name, check=False)


def test_the_base_is_what_the_tier_says(images: dict[str, str]) -> None:
    version = _run(images["detector"], "python", "--version")
    assert version.returncode == 0, version.stderr
    print(f"base: {'stand-in' if stand_in_base() else 'registry'}, {version.stdout.strip()}")
    assert version.stdout.startswith("Python 3.11."), version.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_runs_as_the_fixed_non_root_user(images: dict[str, str], service: str) -> None:
    config = inspect(images[service])["Config"]
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert config["Cmd"] == ["python", "-m", service]
    assert not config.get("Entrypoint")
    ids = _run(images[service], "id", "-u")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.strip() == APP_UID
    # Its code is root's: the app user cannot change what it runs.
    write = _run(images[service], "sh", "-c", "touch /app/fraudcore/x || exit 3")
    assert write.returncode == 3, "the app user can write into /app"


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_holds_its_code_only_and_no_tests_or_secrets(
    images: dict[str, str], service: str
) -> None:
    listing = _run(
        images[service],
        "python",
        "-c",
        "import json, os; print(json.dumps(sorted(os.path.relpath(os.path.join(d, f), '/app') "
        "for d, _, fs in os.walk('/app') for f in fs)))",
    )
    assert listing.returncode == 0, listing.stderr
    files = set(json.loads(listing.stdout))
    expected = {
        f
        for f in _context_files("requirements.txt", "fraudcore", service)
        if not f.endswith(".pyc")
    }
    assert files == expected, (
        f"unexpected in /app: {sorted(files - expected)}; missing: {sorted(expected - files)}"
    )
    other = next(s for s in SERVICES if s != service)
    assert not any(f.startswith(f"{other}/") for f in files), f"{other}'s code is in the image"

    # Nowhere in the image (searched as root, to see everything): the repository's tests,
    # secrets, broker data, git or venv.
    found = _run(
        images[service],
        "sh",
        "-c",
        "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( "
        "-name '*.password' -o -name '*.p12' -o -name '.env' -o -name '.kafka-secrets' "
        "-o -name '.kafka-data' -o -name '.git' -o -name '.venv' -o -path '/app/tests' "
        "-o -name 'test_*.py' -path '/app/*' \\) -print",
        user="0",
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "", f"found in the image:\n{found.stdout}"


def test_the_images_share_their_dependency_layer(images: dict[str, str]) -> None:
    """Both are built on one base stage: every layer but the service's own code is shared,
    the pip install included (it is made once, not once per service)."""
    layers = {service: inspect(images[service])["RootFS"]["Layers"] for service in SERVICES}
    generator, detector = layers["generator"], layers["detector"]
    assert len(generator) == len(detector), layers
    assert generator[:-1] == detector[:-1], "the images differ below their own code's layer"
    assert generator[-1] != detector[-1], "the last layer is each service's own code"
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", images["detector"])
    assert "pip install" in history.stdout, history.stdout
    # The pip layer is below the last one (history lists the newest first; the code is last).
    steps = [line for line in history.stdout.splitlines() if line.strip()]
    pip_step = next(i for i, line in enumerate(steps) if "pip install" in line)
    code_step = next(i for i, line in enumerate(steps) if "detector/" in line and "COPY" in line)
    assert code_step < pip_step, steps
