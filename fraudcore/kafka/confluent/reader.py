"""The confluent-kafka adapter's Reader (fraudcore/kafka/ports.py): a librdkafka consumer outside
any group (its group id is never joined), read_committed, assigned partitions by hand.

librdkafka starts a partition where it is assigned: a seek before the first fetch is kept here
and becomes the assignment's start offset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import Consumer as RdConsumer

from fraudcore.config import CommonSettings
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from fraudcore.kafka.confluent.common import (
    REQUEST_TIMEOUT_SECONDS,
    client_config,
    consume_arrived,
    mapped,
    records_of,
    to_rd,
)
from fraudcore.kafka.confluent.errors import client_error
from fraudcore.kafka.types import ConsumedRecord, TopicPartition

MAX_POLL_RECORDS = 10_000


def without_group_refusals(messages: Sequence[Message]) -> list[Message]:
    """The messages but librdkafka's reports that the user may not describe the reader's group.
    librdkafka looks up the coordinator of any group id it is given; this reader's group is never
    joined and its offsets never used, so a secure broker's ACLs need not name it."""
    return [
        message
        for message in messages
        if (error := message.error()) is None
        or error.code() != KafkaError.GROUP_AUTHORIZATION_FAILED
    ]


class Reader:
    def __init__(
        self,
        settings: CommonSettings,
        client_id: str,
        *,
        from_latest: bool = False,
        request_timeout_ms: int | None = None,
    ) -> None:
        self._timeout = (request_timeout_ms or REQUEST_TIMEOUT_SECONDS * 1000) / 1000
        self._default_start = OFFSET_END if from_latest else OFFSET_BEGINNING
        options = {
            **client_config(settings, client_id),
            "group.id": f"{client_id}-unjoined",  # needed by librdkafka; never subscribed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "allow.auto.create.topics": False,
            # An offset before the log start (deleted by retention) reads from there.
            "auto.offset.reset": "latest" if from_latest else "earliest",
            "fetch.max.bytes": DEAD_LETTER_MAX_MESSAGE_BYTES * 4,
            "max.partition.fetch.bytes": DEAD_LETTER_MAX_MESSAGE_BYTES,
        }
        self._consumer = mapped(lambda: RdConsumer(options))
        self._starts: dict[TopicPartition, int] = {}  # assigned, not yet handed to librdkafka
        self._assigned: list[TopicPartition] = []

    def _metadata(self, topic: str | None = None) -> Any:
        return mapped(lambda: self._consumer.list_topics(topic, timeout=self._timeout))

    def topics(self) -> set[str]:
        return set(self._metadata().topics)

    def partitions(self, topic: str) -> list[TopicPartition]:
        found = self._metadata(topic).topics.get(topic)
        if found is None or found.error is not None:
            return []
        return [TopicPartition(topic, p) for p in sorted(found.partitions)]

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        low, high = mapped(lambda: self._consumer.get_watermark_offsets(to_rd(tp), self._timeout))
        return int(low), int(high)

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[0] for tp in tps}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[1] for tp in tps}

    def offsets_for_times(
        self, times_ms: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        wanted = [to_rd(tp, at) for tp, at in times_ms.items()]
        found = mapped(lambda: self._consumer.offsets_for_times(wanted, self._timeout))
        return {
            TopicPartition(p.topic, p.partition): p.offset if p.offset >= 0 else None for p in found
        }

    def assign(self, tps: Sequence[TopicPartition]) -> None:
        self._assigned = list(tps)
        self._starts = {tp: self._default_start for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._starts:
            self._starts[tp] = offset
        else:
            mapped(lambda: self._consumer.seek(to_rd(tp, offset)))

    def seek_to_beginning(self, tps: Sequence[TopicPartition]) -> None:
        for tp in tps:
            self.seek(tp, OFFSET_BEGINNING)

    def _start(self) -> None:
        """Hand the assignment to librdkafka, each partition at its start offset."""
        if not self._starts:
            return
        assignment = [to_rd(tp, self._starts.get(tp, OFFSET_INVALID)) for tp in self._assigned]
        self._starts = {}
        mapped(lambda: self._consumer.assign(assignment))

    def position(self, tp: TopicPartition) -> int:
        start = self._starts.get(tp)
        if start is not None:
            return start if start >= 0 else self._resolve(tp, start)
        found = mapped(lambda: self._consumer.position([to_rd(tp)]))[0]
        if found.offset >= 0:
            return int(found.offset)
        return self._resolve(tp, self._default_start)

    def _resolve(self, tp: TopicPartition, logical: int) -> int:
        low, high = self._watermarks(tp)
        return low if logical == OFFSET_BEGINNING else high

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._start()
        mapped(lambda: self._consumer.pause([to_rd(tp) for tp in tps]))

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._start()
        mapped(lambda: self._consumer.resume([to_rd(tp) for tp in tps]))

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]:
        self._start()
        try:
            messages = consume_arrived(self._consumer, MAX_POLL_RECORDS, timeout_ms / 1000)
        except KafkaException as exc:
            raise client_error(exc) from exc
        return records_of(without_group_refusals(messages))

    def close(self) -> None:
        self._consumer.close()
