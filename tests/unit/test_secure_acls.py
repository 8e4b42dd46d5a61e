"""The secure broker's ACLs are made in two places, kafka/broker.sh (local) and the kafka-init
service of docker-compose.kafka.secure.yml (Docker); the two grant the same, so neither drifts."""

from __future__ import annotations

import itertools
import re
import shlex

from fraudcore.core import topics
from tests.kafka_helpers import REPO_ROOT

# One grant: (principal, operations, resource kind, resource, pattern type).
Grant = tuple[str, frozenset[str], str, str, str]

# broker.sh's local names for the settings it reads (the transactional-id prefix defaults to
# the group, as in kafka-init).
BROKER_SH_NAMES = {
    "input": "TRANSACTIONS_TOPIC",
    "legit": "LEGIT_TOPIC",
    "fraud": "FRAUD_TOPIC",
    "dead": "DEAD_LETTER_TOPIC",
    "group": "CONSUMER_GROUP",
    "txn_prefix": "CONSUMER_GROUP",
}
RESOURCES = {"--topic": "topic", "--group": "group", "--transactional-id": "transactional-id"}


def grants(script: str, command: str, names: dict[str, str]) -> set[Grant]:
    """The grants of every `command ... --allow-principal ...` in a shell script, each resource
    named by the setting it comes from."""
    joined = re.sub(r"\\\n\s*", " ", script)
    found: set[Grant] = set()
    for line in joined.splitlines():
        if not line.strip().startswith(f"{command} "):
            continue
        words = shlex.split(line.strip())
        if "--allow-principal" not in words:
            continue
        options = list(itertools.pairwise(words))
        principal = next(value for flag, value in options if flag == "--allow-principal")
        operations = frozenset(value for flag, value in options if flag == "--operation")
        pattern = next(
            (value for flag, value in options if flag == "--resource-pattern-type"), "LITERAL"
        )
        for flag, value in options:
            if flag in RESOURCES:
                name = re.sub(r"\$+(\w+)", lambda m: "${" + names.get(m[1], m[1]) + "}", value)
                found.add((principal, operations, RESOURCES[flag], name, pattern))
    return found


def broker_sh_grants() -> set[Grant]:
    return grants((REPO_ROOT / "kafka" / "broker.sh").read_text(), "run_setup_job", BROKER_SH_NAMES)


def kafka_init_grants() -> set[Grant]:
    return grants((REPO_ROOT / "docker-compose.kafka.secure.yml").read_text(), "allow", {})


def test_broker_sh_and_kafka_init_grant_the_same_acls() -> None:
    local = broker_sh_grants()
    assert len(local) >= 7, local  # the parser found them
    assert local == kafka_init_grants()


def test_the_detector_may_keep_any_rules_changelogs() -> None:
    """One prefixed grant covers the changelog of every rule, whatever the rules file names it."""
    group = "${CONSUMER_GROUP}"
    prefix = topics.changelog_prefix(group)
    assert topics.changelog_topic(group, "any_rule").startswith(prefix)
    granted = {
        operations
        for principal, operations, kind, name, pattern in broker_sh_grants()
        if (principal, kind, name, pattern) == ("User:detector", "topic", prefix, "PREFIXED")
    }
    assert len(granted) == 1, granted
    needed = {"CREATE", "DESCRIBE"} | {
        access for spec in topics.changelog_specs(group, ["any_rule"], 1) for access in spec.access
    }
    assert needed <= granted.pop()
