"""kafka/jars.py and kafka/jars.lock: the Kafka jars without Maven.

The fetches here read a repository of made-up jars through file:// URLs (MAVEN_REPOSITORY_URL),
so they need no network; the real lockfile is checked against kafka/pom.xml.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JARS_SCRIPT = REPO / "kafka" / "jars.py"
LOCKFILE = REPO / "kafka" / "jars.lock"
POM = REPO / "kafka" / "pom.xml"
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def lock_rows() -> dict[str, str]:
    """`group:artifact` -> version, from the committed lockfile."""
    rows: dict[str, str] = {}
    for line in LOCKFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            group, artifact, version = line.split()[0].split(":")
            rows[f"{group}:{artifact}"] = version
    return rows


def test_lockfile_was_written_from_the_current_pom() -> None:
    recorded = re.search(r"^# pom-sha256 ([0-9a-f]{64})$", LOCKFILE.read_text(), re.M)
    assert recorded, "kafka/jars.lock has no '# pom-sha256' line"
    assert recorded.group(1) == hashlib.sha256(POM.read_bytes()).hexdigest(), (
        "kafka/pom.xml changed since kafka/jars.lock was written: run `python3 kafka/jars.py lock`"
    )


def test_lockfile_pins_each_dependency_of_the_pom_at_its_version() -> None:
    root = ET.parse(POM).getroot()  # noqa: S314 (our own file)
    properties = {
        p.tag.split("}")[1]: p.text or "" for p in root.find("m:properties", POM_NS) or []
    }
    rows = lock_rows()
    dependencies = root.findall("m:dependencies/m:dependency", POM_NS)
    assert dependencies
    for dependency in dependencies:
        group = dependency.findtext("m:groupId", namespaces=POM_NS)
        artifact = dependency.findtext("m:artifactId", namespaces=POM_NS)
        version = re.sub(
            r"\$\{([\w.]+)\}",
            lambda m: properties[m.group(1)],
            dependency.findtext("m:version", default="", namespaces=POM_NS),
        )
        assert rows.get(f"{group}:{artifact}") == version, f"{group}:{artifact}"


def make_repository(root: Path, jars: dict[str, bytes]) -> Path:
    """A Maven-layout directory with `org.example:<name>:1.0` jars."""
    repository = root / "repository"
    for name, content in jars.items():
        folder = repository / "org" / "example" / name / "1.0"
        folder.mkdir(parents=True)
        (folder / f"{name}-1.0.jar").write_bytes(content)
    return repository


def write_lockfile(path: Path, jars: dict[str, bytes]) -> Path:
    lines = ["# made up"]
    lines += [f"org.example:{n}:1.0 {hashlib.sha256(c).hexdigest()}" for n, c in jars.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch(lockfile: Path, lib: Path, repository: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(JARS_SCRIPT),
            "fetch",
            "--lockfile",
            str(lockfile),
            "--lib-dir",
            str(lib),
        ],
        env={**os.environ, "MAVEN_REPOSITORY_URL": repository.as_uri()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


JARS = {"alpha": b"alpha bytes", "beta": b"beta bytes", "gamma": b"gamma bytes"}


def test_fetch_fills_the_lib_dir_with_verified_jars_and_a_stamp(tmp_path: Path) -> None:
    lockfile = write_lockfile(tmp_path / "jars.lock", JARS)
    lib = tmp_path / "lib"
    done = fetch(lockfile, lib, make_repository(tmp_path, JARS))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in lib.glob("*.jar")) == [
        "alpha-1.0.jar",
        "beta-1.0.jar",
        "gamma-1.0.jar",
    ]
    assert (lib / "beta-1.0.jar").read_bytes() == b"beta bytes"
    stamp = (lib / ".jars.lock.sha256").read_text().strip()
    assert stamp == hashlib.sha256(lockfile.read_bytes()).hexdigest()
    assert lib.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jars.lock", "lib", "repository"]


def test_a_wrong_hash_names_the_jar_in_one_line_and_keeps_the_old_lib(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "old-1.0.jar").write_bytes(b"the set that worked")
    lockfile = write_lockfile(tmp_path / "jars.lock", JARS)
    tampered = {**JARS, "beta": b"not what was locked"}
    done = fetch(lockfile, lib, make_repository(tmp_path, tampered))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "beta-1.0.jar (org.example:beta:1.0): sha256 mismatch" in done.stderr
    assert [p.name for p in lib.iterdir()] == ["old-1.0.jar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jars.lock", "lib", "repository"]


def test_a_failed_download_names_the_jar_and_leaves_no_lib(tmp_path: Path) -> None:
    lockfile = write_lockfile(tmp_path / "jars.lock", JARS)
    repository = make_repository(tmp_path, {k: v for k, v in JARS.items() if k != "gamma"})
    done = fetch(lockfile, tmp_path / "lib", repository)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("jars.py: gamma-1.0.jar (org.example:gamma:1.0): download failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jars.lock", "repository"]


def test_a_refetch_reuses_the_jars_whose_hash_still_matches(tmp_path: Path) -> None:
    lockfile = write_lockfile(tmp_path / "jars.lock", JARS)
    lib = tmp_path / "lib"
    assert fetch(lockfile, lib, make_repository(tmp_path, JARS)).returncode == 0
    changed = {**JARS, "gamma": b"gamma 2"}
    write_lockfile(lockfile, changed)
    empty = tmp_path / "empty"
    (empty / "org" / "example" / "gamma" / "1.0").mkdir(parents=True)
    (empty / "org" / "example" / "gamma" / "1.0" / "gamma-1.0.jar").write_bytes(b"gamma 2")
    done = fetch(lockfile, lib, empty)  # only gamma is downloadable: alpha and beta are reused
    assert done.returncode == 0, done.stderr
    assert (lib / "gamma-1.0.jar").read_bytes() == b"gamma 2"
    assert (lib / "alpha-1.0.jar").read_bytes() == b"alpha bytes"
