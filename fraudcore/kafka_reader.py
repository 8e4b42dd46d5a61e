"""The Kafka port's reader: committed records of whole topics, up to where they ended when it
opened. The audit reads with it; the errors it raises are the project's (fraudcore/errors.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from fraudcore.config import CommonSettings
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from fraudcore.kafka_port import ConsumedRecord, client_error, client_options
from kafka import KafkaConsumer


class IncompleteReadError(RuntimeError):
    """A topic could not be read up to the end offsets taken at the start."""


class TopicReader:
    """Reads topics with read_committed up to the end offsets found when it opens.

    End offsets are taken for the topics in the order given, outputs before the input, so
    that every output counted has its input counted too. Topics are then read one set at a
    time, so the outputs can be streamed through the matcher instead of held in memory.
    """

    def __init__(
        self, settings: CommonSettings, client_id: str, names: Sequence[str], timeout: float
    ) -> None:
        self._timeout = timeout
        self._consumer = KafkaConsumer(
            **client_options(settings, client_id),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            allow_auto_create_topics=False,
            max_poll_records=10_000,
            fetch_max_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
            max_partition_fetch_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
        )
        try:
            existing = self._consumer.topics()
            self.missing = [name for name in dict.fromkeys(names) if name not in existing]
            self._ends: dict[TopicPartition, int] = {}
            for name in dict.fromkeys(names):
                if name not in self.missing:
                    found = self._consumer.partitions_for_topic(name)
                    tps = [TopicPartition(name, p) for p in sorted(found)]
                    self._ends.update(self._consumer.end_offsets(tps))
        except BaseException as exc:
            self._consumer.close()
            if isinstance(exc, KafkaError):
                raise client_error(exc) from exc
            raise

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._consumer.close()

    def records(self, names: Sequence[str]) -> Iterator[ConsumedRecord]:
        """Every committed record of these topics, up to the end offsets taken at the start."""
        try:
            yield from self._records(names)
        except KafkaError as exc:
            raise client_error(exc) from exc

    def _records(self, names: Sequence[str]) -> Iterator[ConsumedRecord]:
        ends = {tp: end for tp, end in self._ends.items() if tp.topic in names}
        if not ends:  # missing topics read as empty
            return
        consumer = self._consumer
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        deadline = time.monotonic() + self._timeout
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            if time.monotonic() > deadline:
                behind = ", ".join(
                    f"{tp.topic}-{tp.partition} at {consumer.position(tp)} of {ends[tp]}"
                    for tp in sorted(remaining)
                )
                raise IncompleteReadError(f"not read to the end in {self._timeout:g}s: {behind}")
            for tp, batch in consumer.poll(timeout_ms=200).items():
                end = ends[tp]
                for r in batch:
                    if r.offset < end:
                        yield r
            for tp in list(remaining):
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
        consumer.resume(*ends)
