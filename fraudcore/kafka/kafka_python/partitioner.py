"""Where a keyed record goes: the Java client's placement, with the key's hash remembered.

kafka-python's DefaultPartitioner computes murmur2 in pure Python for every record, about a
tenth of the detector's CPU. Keys repeat (one per account), so the hash is memoized; the
partition chosen is the same as DefaultPartitioner's (and the Java client's) for every key.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from kafka.partitioner import DefaultPartitioner, Partitioner, murmur2

# Distinct keys whose hash is kept: the generator uses 1,000 accounts; a key beyond this bound
# costs one murmur2, as it would without the cache.
HASH_CACHE_KEYS = 100_000


class KeyHashPartitioner(Partitioner):  # type: ignore[misc]  # kafka-python has no type hints
    """DefaultPartitioner's choice (murmur2 of the key, modulo the partition count), faster."""

    def __init__(self, cache_keys: int = HASH_CACHE_KEYS) -> None:
        self._unkeyed = DefaultPartitioner()
        self._positive_hash: Callable[[bytes], int] = lru_cache(maxsize=cache_keys)(
            lambda key: murmur2(key) & 0x7FFFFFFF
        )

    def partition(  # noqa: PLR0917  # kafka-python calls it with these six, by position
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return int(
                self._unkeyed.partition(
                    topic, key, serialized_key, value, serialized_value, cluster
                )
            )
        ordered: list[int] = sorted(partitions)
        return ordered[self._positive_hash(bytes(serialized_key)) % len(ordered)]
