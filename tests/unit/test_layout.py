"""The shape of the code: a pure core, Kafka client libraries only inside their adapter package,
kafka-python's internals quarantined, and modules a newcomer can read in one sitting."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.kafka_helpers import REPO_ROOT

CORE = REPO_ROOT / "fraudcore" / "core"
ADAPTERS = REPO_ROOT / "fraudcore" / "kafka"
KAFKA_PYTHON = ADAPTERS / "kafka_python"
QUARANTINE = [KAFKA_PYTHON / f"{name}.py" for name in ("workarounds", "login", "sender_guard")]
SOURCES = ["fraudcore", "generator", "detector", "dashboard", "bench", "devtools"]
# The top-level names of the Kafka client libraries; only their adapter packages import them.
CLIENT_LIBRARIES = {"kafka", "confluent_kafka", "aiokafka"}
ADAPTER_OF = {"kafka": KAFKA_PYTHON, "confluent_kafka": ADAPTERS / "confluent"}
SERVICES = ["fraudcore", "generator", "detector", "dashboard", "devtools"]
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


def client_libraries(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)} & CLIENT_LIBRARIES


def test_only_an_adapter_imports_its_client_library() -> None:
    """No exemption: the services, the dashboard and the devtools speak the port
    (fraudcore/kafka/ports.py). The bench, like the tests, may use a client as an instrument of
    its own: its reference rows are other people's programs on purpose."""
    offenders = {
        f"{path.relative_to(REPO_ROOT)} imports {sorted(libraries)}"
        for folder in SERVICES
        for path in (REPO_ROOT / folder).rglob("*.py")
        if (libraries := client_libraries(path))
        and not all(ADAPTER_OF.get(lib) in path.parents for lib in libraries)
    }
    assert offenders == set()


def test_the_layout_check_sees_a_client_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from confluent_kafka import Producer\nimport os\n")
    assert client_libraries(sample) == {"confluent_kafka"}


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
