"""scripts/python-only.sh: the PATH its proof runs on has Python and make, and no Java or Maven."""

from __future__ import annotations

import shutil
from pathlib import Path

from devtools.broker import run_command


def test_the_proofs_path_hides_java_and_maven_only(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    done = run_command(["scripts/python-only.sh", "path", str(bin_dir)])
    assert done.returncode == 0, done.stderr
    path = str(bin_dir)
    for hidden in ("java", "javac", "keytool", "mvn"):
        assert shutil.which(hidden, path=path) is None, hidden
    for needed in ("python3", "make", "git", "openssl", "setsid", "flock"):
        assert shutil.which(needed, path=path) is not None, needed
