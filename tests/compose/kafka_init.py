"""kafka-init's script, run on this machine with stand-ins for the image's topic and ACL tools.

The stand-ins only record their arguments, so the static checks see which topics (names,
partition counts, configs) and ACLs the script asks for, under the variables Compose would give
it, without a broker or an image. The real tools run in the Docker tier
(tests/docker/test_kafka_file.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fraudcore.core import topics
from tests.compose.compose_files import REPO, environment_of
from tests.compose.compose_host import ComposeHost

TOPIC_LIST = REPO / "kafka" / "topics.txt"
TOPIC_LIST_IN_CONTAINER = "/etc/fraud/topics.txt"
STAND_INS = ("kafka-topics.sh", "kafka-acls.sh")


@dataclass(frozen=True)
class TopicLine:
    """One line of kafka/topics.txt: `SETTING default-name partitions [config=value ...]`."""

    setting: str
    name: str
    partitions: int
    configs: dict[str, str]


def topic_lines() -> list[TopicLine]:
    lines = []
    for line in TOPIC_LIST.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        setting, name, partitions, *configs = line.split()
        pairs = dict(config.split("=", 1) for config in configs)
        lines.append(TopicLine(setting, name, int(partitions), pairs))
    return lines


def expected_topics(variables: dict[str, str]) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, configs) of the topics fraudcore/core/topics.py declares, under the
    names and partition count that `variables` (the services' settings) give them."""
    partitions = variables.get(topics.PARTITIONS_SETTING) or None
    return {
        variables.get(setting) or spec.name: (
            int(partitions) if partitions else spec.partitions,
            spec.configs,
        )
        for setting, spec in zip(topics.SETTINGS, topics.default_topics(), strict=True)
    }


def pass_through(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    """What Compose gives the service's variables that have no value in the file: the shell's
    or .env's value (`variables`); one set in neither stays out of the container."""
    return {
        key: variables[key]
        for key, value in environment_of(service).items()
        if value is None and key in variables
    }


@dataclass
class Calls:
    """What the script asked the stand-in tools for."""

    raw: list[list[str]]
    topics: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    as_admin: set[str] = field(default_factory=set)  # topics created with --command-config
    acls: list[tuple[str, frozenset[str], frozenset[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for tool, *args in self.raw:
            pairs = list(zip(args, [*args[1:], ""], strict=True))
            values = {flag: [v for f, v in pairs if f == flag] for flag, _ in pairs}
            if tool == "kafka-topics.sh" and "--create" in args:
                (name,) = values["--topic"]
                (partitions,) = values["--partitions"]
                configs = dict(c.split("=", 1) for c in values.get("--config", []))
                assert name not in self.topics, f"{name} created twice"
                self.topics[name] = (int(partitions), configs)
                if "--command-config" in args:
                    self.as_admin.add(name)
            if tool == "kafka-acls.sh" and "--add" in args:
                (principal,) = values["--allow-principal"]
                resources = {
                    f"{flag[2:]}={value}{'*' if 'PREFIXED' in args else ''}"
                    for flag in ("--topic", "--group", "--transactional-id")
                    for value in values.get(flag, [])
                }
                operations = frozenset(values["--operation"])
                self.acls.append((principal, operations, frozenset(resources)))


def run_kafka_init(
    service: dict[str, Any],
    variables: dict[str, str],
    root: Path,
    secrets: tuple[str, ...] = (),
) -> Calls:
    """Run the service's command with the stand-ins; `variables` are the shell's and .env's
    values, `secrets` the names of the compose secrets it reads (given dummy contents)."""
    root.mkdir(parents=True, exist_ok=True)
    dummies = {}
    for name in secrets:
        dummies[name] = root / f"secret-{name}"
        dummies[name].write_text(f"dummy {name}\n")
    host = ComposeHost(root, dummies, ports={9092: 9092})
    log = root / "calls.jsonl"
    for tool in STAND_INS:
        stand_in = host.bin / tool
        stand_in.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            f"with open({str(log)!r}, 'a') as out:\n"
            f"    out.write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n"
        )
        stand_in.chmod(0o755)
    done = subprocess.run(
        host.command(service),
        env=host.env(service) | pass_through(service, variables),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kafka-init failed ({done.returncode}):\n{done.stderr}"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Calls(calls)
