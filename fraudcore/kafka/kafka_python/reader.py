"""The kafka-python adapter's Reader (fraudcore/kafka/ports.py): a KafkaConsumer outside any
group, read_committed, assigned partitions by hand, its errors mapped onto the project's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fraudcore.config import CommonSettings
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from fraudcore.kafka.kafka_python.clients import client_options, fetch_options, mapped, to_kafka
from fraudcore.kafka.types import ConsumedRecord, TopicPartition
from kafka import KafkaConsumer


class Reader:
    def __init__(
        self,
        settings: CommonSettings,
        client_id: str,
        *,
        from_latest: bool = False,
        request_timeout_ms: int | None = None,
    ) -> None:
        options: dict[str, Any] = {
            **client_options(settings, client_id),
            **fetch_options(DEAD_LETTER_MAX_MESSAGE_BYTES),
        }
        if request_timeout_ms is not None:
            options["request_timeout_ms"] = request_timeout_ms
        self._consumer = mapped(
            lambda: KafkaConsumer(
                **options,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                allow_auto_create_topics=False,
                # An offset before the log start (deleted by retention) reads from there.
                auto_offset_reset="latest" if from_latest else "earliest",
                max_poll_records=10_000,
            )
        )

    def topics(self) -> set[str]:
        return set(mapped(self._consumer.topics))

    def partitions(self, topic: str) -> list[TopicPartition]:
        found = mapped(lambda: self._consumer.partitions_for_topic(topic)) or ()
        return [TopicPartition(topic, p) for p in sorted(found)]

    def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found = mapped(lambda: self._consumer.beginning_offsets(list(map(to_kafka, tps))))
        return {TopicPartition(*tp): offset for tp, offset in found.items()}

    def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        found = mapped(lambda: self._consumer.end_offsets(list(map(to_kafka, tps))))
        return {TopicPartition(*tp): offset for tp, offset in found.items()}

    def offsets_for_times(
        self, times_ms: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        found = mapped(
            lambda: self._consumer.offsets_for_times(
                {to_kafka(tp): t for tp, t in times_ms.items()}
            )
        )
        return {TopicPartition(*tp): None if at is None else at.offset for tp, at in found.items()}

    def assign(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.assign(list(map(to_kafka, tps)))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(to_kafka(tp), offset)

    def seek_to_beginning(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.seek_to_beginning(*map(to_kafka, tps))

    def position(self, tp: TopicPartition) -> int:
        position: int = mapped(lambda: self._consumer.position(to_kafka(tp)))
        return position

    def pause(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.pause(*map(to_kafka, tps))

    def resume(self, tps: Sequence[TopicPartition]) -> None:
        self._consumer.resume(*map(to_kafka, tps))

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, Sequence[ConsumedRecord]]:
        records: Mapping[TopicPartition, Sequence[ConsumedRecord]] = mapped(
            lambda: self._consumer.poll(timeout_ms=timeout_ms)
        )
        return records

    def close(self) -> None:
        self._consumer.close()
