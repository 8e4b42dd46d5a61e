"""The memoized partitioner places every key where kafka-python's (and Java's) default does."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner import DefaultPartitioner

from fraudcore.kafka.kafka_python.partitioner import KeyHashPartitioner


class _Cluster:
    """The part of kafka-python's ClusterMetadata a partitioner reads: one topic's partitions."""

    def __init__(self, topic: str, partitions: int) -> None:
        self._topic = topic
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {self._topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self._partitions) if topic == self._topic else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions) if topic == self._topic else set()


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 7, 64])
def test_same_partition_as_the_default_for_every_key(partitions: int) -> None:
    rng = random.Random(partitions)
    keys = [rng.randbytes(rng.randint(0, 40)) for _ in range(2000)] + [b"AB12CD", b"", b"\xff"]
    cluster = _Cluster("t", partitions)
    ours, default = KeyHashPartitioner(cache_keys=500), DefaultPartitioner()
    for key in keys + keys:  # the second pass is served from the cache (and evicts)
        assert ours.partition("t", key, key, None, None, cluster) == default.partition(
            "t", key, key, None, None, cluster
        ), key


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_placement_matches_the_java_client(key: bytes, partition: int) -> None:
    # The Java client's partition for these keys among 1,000 partitions (the values kafka-python
    # checks its murmur2 against): a record keyed here lands where a Java producer puts it.
    cluster = _Cluster("t", 1000)
    assert KeyHashPartitioner().partition("t", key, key, None, None, cluster) == partition


def test_records_without_a_key_are_spread_over_the_partitions() -> None:
    cluster = _Cluster("t", 3)
    chosen = {
        KeyHashPartitioner().partition("t", None, None, b"v", b"v", cluster) for _ in range(200)
    }
    assert chosen == {0, 1, 2}
