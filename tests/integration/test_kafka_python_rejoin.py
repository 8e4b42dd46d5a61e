"""The kafka-python adapter finishes a group rejoin that a poll() cut short, on the real broker.

kafka-python 3.0.12 drops such a rejoin when the topic's metadata asked for it: the member then
keeps no partitions for good (fraudcore/kafka/kafka_python/workarounds.py,
resume_unfinished_join). Here every step that leads there is forced rather than raced: the
topic is created only after the member's first generation (so that one has no partitions), and
the rejoin its metadata then asks for starts in a poll(0), which never waits for it. The port
contract's test_a_member_whose_polls_are_shorter_than_a_rebalance_is_assigned_a_new_topic is
the same fault as it happens, for both adapters. Only kafka-python: confluent-kafka's poll()
raises UNKNOWN_TOPIC_OR_PART for a subscribed topic that does not exist yet.
"""

from __future__ import annotations

import time

import pytest

from fraudcore.config import CommonSettings
from fraudcore.kafka.kafka_python import KafkaPythonDriver
from fraudcore.kafka.ports import GroupConsumerConfig
from fraudcore.kafka.types import TopicPartition
from tests.kafka_helpers import create_topic, unique_name, wait_until

pytestmark = pytest.mark.integration

# Long enough for the member's metadata (refreshed every 100 ms while its topic is unknown) to
# show the new topic, and so for the rejoin to start in one of the poll(0)s.
CUT_SHORT_SECONDS = 1.0
# Polls after the first generation: the member's first metadata answer on the topic ("unknown")
# differs from what it joined with, and the rejoin that asks for (no partitions either) ends
# within them.
SETTLE_POLLS = 3


def test_a_rejoin_cut_short_by_a_poll_is_finished_by_the_next_polls(bootstrap: str) -> None:
    topic = unique_name("rejoin")
    settings = CommonSettings(kafka_broker_url=bootstrap)
    config = GroupConsumerConfig(unique_name("g"), session_timeout_ms=10_000, max_poll_records=500)
    consumer = KafkaPythonDriver().consumer(settings, "rejoin", config)
    generations: list[set[TopicPartition]] = []
    consumer.subscribe(topic, lambda _revoked: None, generations.append)
    try:
        wait_until(lambda: consumer.poll(200) is not None and bool(generations), 30,
                   "the first generation")  # fmt: skip
        for _ in range(SETTLE_POLLS):
            consumer.poll(200)
        assert not any(generations), "no partitions before the topic exists"
        create_topic(bootstrap, topic, partitions=2)
        cut_short_until = time.monotonic() + CUT_SHORT_SECONDS
        while time.monotonic() < cut_short_until:
            consumer.poll(0)
        every = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        wait_until(lambda: consumer.poll(200) is not None and consumer.assignment() == every, 15,
                   "both partitions assigned")  # fmt: skip
        assert generations[-1] == every
    finally:
        consumer.close()
