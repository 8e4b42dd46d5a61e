"""The shape of the code (issue 12): a pure core, kafka-python's internals in one module, and
modules a newcomer can read in one sitting."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.kafka_helpers import REPO_ROOT

CORE = REPO_ROOT / "fraudcore" / "core"
# The modules that may name kafka-python's internals.
QUARANTINE = {
    REPO_ROOT / "fraudcore" / f"{name}.py" for name in ("kafka_workarounds", "kafka_sender_guard")
}
SOURCES = ["fraudcore", "generator", "detector", "dashboard", "bench", "devtools"]
# The Kafka port: the only modules of the services that import the client library.
PORT = {
    f"fraudcore/{name}.py"
    for name in (
        "kafka_port",
        "kafka_admin",
        "kafka_reader",
        "kafka_workarounds",
        "kafka_sender_guard",
        "partitioner",
    )
}
SERVICES = ["fraudcore", "generator", "detector"]
MAX_LINES = 400

# Names that belong to kafka-python's internals, not its documented API.
INTERNALS = re.compile(
    r"\._sender\b|\._transaction_manager\b|\._accumulator\b|\._client\b|\._coordinator\b"
    r"|\bkafka\.(net|protocol|coordinator|producer|consumer\.subscription_state|consumer\.fetcher)\b"
    r"|kafka-io-"
)


def python_files() -> list[Path]:
    return sorted(path for folder in SOURCES for path in (REPO_ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_kafka() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert modules, "the core package is missing"
    for path in modules:
        kafka = {name for name in imported_modules(path) if name.split(".")[0] == "kafka"}
        assert not kafka, f"{path.relative_to(REPO_ROOT)} imports {sorted(kafka)}"
        # Nor indirectly: the core imports only the core (and the standard library).
        ours = {name for name in imported_modules(path) if name.split(".")[0] in SOURCES}
        assert all(name.startswith("fraudcore.core") for name in ours), (path, ours)


def test_the_check_finds_an_import_of_kafka(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from kafka.errors import KafkaError\nimport kafka\n")
    assert imported_modules(sample) == {"kafka.errors", "kafka"}


def test_the_services_reach_kafka_only_through_the_port() -> None:
    offenders = {
        str(path.relative_to(REPO_ROOT))
        for folder in SERVICES
        for path in (REPO_ROOT / folder).rglob("*.py")
        if str(path.relative_to(REPO_ROOT)) not in PORT
        and any(name.split(".")[0] == "kafka" for name in imported_modules(path))
    }
    assert offenders == set()


def test_only_the_quarantine_names_kafka_python_internals() -> None:
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in python_files()
        if path not in QUARANTINE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNALS.search(line)
    ]
    assert offenders == []
    for path in QUARANTINE:
        assert INTERNALS.search(path.read_text()), f"{path.name} has nothing to quarantine?"


def test_no_source_file_is_longer_than_a_sitting() -> None:
    long = {
        str(path.relative_to(REPO_ROOT)): lines
        for path in python_files()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
