"""The Kafka port's readers, outside any consumer group, read_committed: whole topics up to
where they ended when the reader opened (the audit), and ranges of one partition (the detector
rebuilding its velocity windows). The errors they raise are the project's (fraudcore/errors.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from fraudcore.config import CommonSettings
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from fraudcore.errors import RetriableClientError
from fraudcore.kafka_port import ConsumedRecord, client_error, client_options
from kafka import KafkaConsumer

log = logging.getLogger(__name__)

READ_POLL_MS = 200


def _reader_consumer(settings: CommonSettings, client_id: str) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            **client_options(settings, client_id),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            allow_auto_create_topics=False,
            # A range that starts before the log start (deleted by retention) reads from there.
            auto_offset_reset="earliest",
            max_poll_records=10_000,
            fetch_max_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
            max_partition_fetch_bytes=DEAD_LETTER_MAX_MESSAGE_BYTES,
            metrics_enabled=False,
        )
    except KafkaError as exc:
        raise client_error(exc) from exc


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
        self._consumer = _reader_consumer(settings, client_id)
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
            for tp, batch in consumer.poll(timeout_ms=READ_POLL_MS).items():
                end = ends[tp]
                for r in batch:
                    if r.offset < end:
                        yield r
            for tp in list(remaining):
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
        consumer.resume(*ends)


class PartitionReader:
    """Reads offset ranges of single partitions; one client, kept open for many reads."""

    def __init__(self, settings: CommonSettings, client_id: str) -> None:
        self._consumer = _reader_consumer(settings, client_id)

    def close(self) -> None:
        self._consumer.close()

    def read(
        self, tp: TopicPartition, start: int, end: int, timeout: float
    ) -> Iterator[ConsumedRecord]:
        """The committed records of `tp` from offset `start` up to `end` (exclusive). Raises
        RetriableClientError when they cannot all be read within `timeout` seconds."""
        if start >= end:
            return
        consumer = self._consumer
        try:
            consumer.assign([tp])
            if consumer.beginning_offsets([tp])[tp] > start:
                log.warning(
                    "%s-%d: offsets from %d are gone (retention), read from the log start",
                    tp.topic,
                    tp.partition,
                    start,
                )
            consumer.seek(tp, start)
            deadline = time.monotonic() + timeout
            while consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise RetriableClientError(
                        f"{tp.topic}-{tp.partition} not read from {start} to {end} in "
                        f"{timeout:g}s (at {consumer.position(tp)})"
                    )
                for batch in consumer.poll(timeout_ms=READ_POLL_MS).values():
                    for record in batch:
                        if record.offset >= end:
                            return
                        yield record
        except KafkaError as exc:
            raise client_error(exc) from exc
