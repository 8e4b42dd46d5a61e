"""A service starts on a cluster right after another service created its topics: the broker it
asks may not know them yet, and that must not stop it (fraudcore/kafka/confluent/admin.py).

Each topic is created through node 1 and at once ensured through node 3, as the generator
creates the input topic and the detector, started with it, checks its access to it. Before,
the confluent adapter failed with UNKNOWN_TOPIC_OR_PART in about one ensure of ten here, and the
detector exited at start-up.
"""

from __future__ import annotations

import os

import pytest
from kafka.admin import NewTopic

from devtools.broker import JarCluster
from fraudcore.config import CommonSettings
from fraudcore.core.topics import TopicSpec
from fraudcore.kafka import driver
from kafka import KafkaAdminClient
from tests.kafka_helpers import unique_name

pytestmark = [pytest.mark.cluster]

ROUNDS = 40


@pytest.mark.timeout(300)
def test_topics_just_created_elsewhere_are_ensured(
    cluster: JarCluster, cluster_bootstrap: str
) -> None:
    first, *_, last = cluster_bootstrap.split(",")
    creator = KafkaAdminClient(bootstrap_servers=first)
    client = os.environ.get("KAFKA_CLIENT", "kafka-python")
    settings = CommonSettings(kafka_broker_url=last, kafka_client=client)
    admin = driver(settings).admin(settings, "topic-creation", 10_000)
    failures: list[str] = []
    try:
        for _ in range(ROUNDS):
            name = unique_name("created-elsewhere")
            creator.create_topics([NewTopic(name, 3, -1)])
            try:
                admin.ensure_topics([TopicSpec(name, 3, access=("WRITE",))])
            except Exception as exc:
                failures.append(repr(exc))
    finally:
        admin.close()
        creator.close()
    assert not failures, f"{len(failures)} of {ROUNDS} ensures failed: {failures[:3]}"
