"""Fill kafka/lib with the Kafka jars named in kafka/jars.lock, from Maven Central, verified.

    python3 kafka/jars.py fetch   what `make jars` (kafka/broker.sh jars) runs
    python3 kafka/jars.py lock    rewrite jars.lock from kafka/pom.xml (this one needs Maven)

Standard library only, so that it runs before the project's venv exists. `fetch` downloads every
jar into a new directory beside kafka/lib, checks its sha256, and only then swaps that directory in:
kafka/lib is either the old complete set or the new one, never half filled. A failed download or a
wrong hash stops it with one line naming the jar. Jars already in kafka/lib with the right hash are
reused rather than downloaded again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCKFILE = HERE / "jars.lock"
POM = HERE / "pom.xml"
LIB_DIR = HERE / "lib"
STAMP_NAME = ".jars.lock.sha256"  # in kafka/lib: the sha256 of the lockfile it was filled from
REPOSITORY = os.environ.get("MAVEN_REPOSITORY_URL", "https://repo1.maven.org/maven2")
DOWNLOAD_TIMEOUT_SECONDS = 120
PARALLEL_DOWNLOADS = 6
POM_HASH_PREFIX = "# pom-sha256 "


class JarError(Exception):
    """One jar could not be had; the message names it."""


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def file_name(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repository: str) -> str:
        path = "/".join([*self.group.split("."), self.artifact, self.version, self.file_name])
        return f"{repository.rstrip('/')}/{path}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lockfile(lockfile: Path) -> list[Jar]:
    """The jars of a lockfile: `group:artifact:version sha256` a line; `#` starts a comment."""
    jars: list[Jar] = []
    for number, raw in enumerate(lockfile.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([\w.-]+):([\w.-]+):([\w.-]+)\s+([0-9a-f]{64})", line)
        if match is None:
            raise JarError(f"{lockfile}:{number}: expected 'group:artifact:version sha256': {raw}")
        jars.append(Jar(*match.groups()))
    if not jars:
        raise JarError(f"{lockfile} names no jars")
    return jars


def lockfile_pom_hash(lockfile: Path) -> str | None:
    """The pom's sha256 that `lock` recorded in the lockfile's header."""
    for line in lockfile.read_text().splitlines():
        if line.startswith(POM_HASH_PREFIX):
            return line.removeprefix(POM_HASH_PREFIX).strip()
    return None


def fetch_one(jar: Jar, into: Path, reuse_from: Path, repository: str) -> None:
    """Put `jar` into `into`: hard-linked from `reuse_from` when its hash is right, else downloaded;
    either way verified."""
    target = into / jar.file_name
    existing = reuse_from / jar.file_name
    if existing.is_file() and sha256_of(existing) == jar.sha256:
        try:
            os.link(existing, target)
        except OSError:
            shutil.copyfile(existing, target)
        return
    url = jar.url(repository)
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response,  # noqa: S310
            target.open("wb") as out,
        ):
            shutil.copyfileobj(response, out)
    except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
        raise JarError(
            f"{jar.file_name} ({jar.coordinates}): download failed: {url}: {error}"
        ) from None
    actual = sha256_of(target)
    if actual != jar.sha256:
        raise JarError(
            f"{jar.file_name} ({jar.coordinates}): sha256 mismatch: "
            f"lockfile {jar.sha256}, downloaded {actual} from {url}"
        )


def fetch(lockfile: Path, lib_dir: Path, repository: str) -> int:
    """Fill `lib_dir` from `lockfile` in one swap; returns how many jars it holds."""
    jars = read_lockfile(lockfile)
    stamp = hashlib.sha256(lockfile.read_bytes()).hexdigest()
    staging = Path(tempfile.mkdtemp(prefix=f".{lib_dir.name}-new-", dir=lib_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; kafka/lib is an ordinary directory
    try:
        with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
            for done in [pool.submit(fetch_one, j, staging, lib_dir, repository) for j in jars]:
                done.result()  # the first failure, in lockfile order, stops the fetch
        (staging / STAMP_NAME).write_text(stamp + "\n")
        swap_in(staging, lib_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(jars)


def swap_in(staging: Path, lib_dir: Path) -> None:
    """Replace `lib_dir` by `staging` with renames only (a running JVM keeps its open jars)."""
    if not lib_dir.exists():
        staging.rename(lib_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{lib_dir.name}-old-", dir=lib_dir.parent))
    lib_dir.rename(retired / lib_dir.name)
    staging.rename(lib_dir)
    shutil.rmtree(retired, ignore_errors=True)


def lock(pom: Path, lockfile: Path, repository: str) -> int:
    """Resolve the pom's runtime jars with Maven, hash each as Maven Central serves it, and write
    the lockfile. Returns how many jars it names."""
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "dependencies.txt"
        subprocess.run(
            ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:list",
             "-DincludeScope=runtime", f"-DoutputFile={listing}"],
            check=True,
        )  # fmt: skip
        found = re.findall(r"^\s+([\w.-]+):([\w.-]+):jar:([\w.-]+):\w+", listing.read_text(), re.M)
        unhashed = [Jar(group, artifact, version, "0" * 64) for group, artifact, version in found]
        hashed: list[Jar] = []
        for jar in unhashed:
            target = Path(scratch) / jar.file_name
            with urllib.request.urlopen(jar.url(repository), timeout=DOWNLOAD_TIMEOUT_SECONDS) as r:  # noqa: S310
                target.write_bytes(r.read())
            hashed.append(Jar(jar.group, jar.artifact, jar.version, sha256_of(target)))
    header = [
        "# Every runtime jar of the local Kafka broker and its CLI tools, with its sha256 as Maven",
        "# Central serves it. kafka/jars.py fetch (make jars) downloads and verifies them.",
        "# Written by `python3 kafka/jars.py lock` from kafka/pom.xml: edit the pom, then relock.",
        f"{POM_HASH_PREFIX}{sha256_of(pom)}",
    ]
    rows = [
        f"{jar.coordinates} {jar.sha256}" for jar in sorted(hashed, key=lambda j: j.coordinates)
    ]
    lockfile.write_text("\n".join(header + rows) + "\n")
    return len(hashed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "lock"])
    parser.add_argument("--lockfile", type=Path, default=LOCKFILE)
    parser.add_argument("--lib-dir", type=Path, default=LIB_DIR)
    parser.add_argument("--pom", type=Path, default=POM)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            count = fetch(args.lockfile, args.lib_dir, REPOSITORY)
            print(f"jars.py: {count} jars verified in {args.lib_dir}", file=sys.stderr)
        else:
            count = lock(args.pom, args.lockfile, REPOSITORY)
            print(f"jars.py: {count} jars written to {args.lockfile}", file=sys.stderr)
    except JarError as error:
        print(f"jars.py: {error}", file=sys.stderr)
        return 1
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"jars.py: {args.command} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
