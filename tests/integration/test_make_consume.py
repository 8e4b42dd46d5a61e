"""`make consume` runs Kafka's own console consumer from the project's jars."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.kafka_helpers import Topics, create_topic, produce, run_command
from tests.samples import tutorial_record

pytestmark = pytest.mark.integration


def make(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BROKER_URL": bootstrap}
    return run_command(["make", "--no-print-directory", *args], env)


def test_consume_prints_max_values_from_the_beginning(bootstrap: str, topics: Topics) -> None:
    create_topic(bootstrap, topics.fraud, partitions=1)
    values = [tutorial_record(900.01 + i) for i in range(30)]
    produce(bootstrap, topics.fraud, ((None, v) for v in values))

    done = make("consume", f"TOPIC={topics.fraud}", "MAX=20", bootstrap=bootstrap)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(v) for v in values[:20]]


def test_consume_shortcut_takes_the_topic_from_its_variable(bootstrap: str, topics: Topics) -> None:
    create_topic(bootstrap, topics.legit, partitions=1)
    produce(bootstrap, topics.legit, ((None, tutorial_record(float(i))) for i in range(5)))
    done = make("consume-legit", f"LEGIT_TOPIC={topics.legit}", "MAX=5", bootstrap=bootstrap)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["amount"] for line in done.stdout.splitlines()] == [0, 1, 2, 3, 4]


def test_consume_without_topic_explains_usage(bootstrap: str) -> None:
    done = make("consume", bootstrap=bootstrap)
    assert done.returncode != 0
    assert "usage: make consume TOPIC=<name>" in done.stderr
