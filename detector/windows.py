"""The velocity windows of the detector's assigned partitions, and how they are rebuilt.

A window is part of the detector's committed state: its checkpoint (first offset held, stream
time) is committed with the partition's offset, in the same transaction in exactly_once mode.
Whenever the detector goes back to a committed offset (a partition newly assigned, a failed
batch) the window is rebuilt by replaying the input from the checkpoint up to that offset, so it
is exactly what an uninterrupted detector would hold there (fraudcore/core/velocity.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fraudcore.core.rule import replay
from fraudcore.core.velocity import PartitionWindow, VelocityRule, WindowCheckpoint
from fraudcore.kafka.reading import PartitionReader
from fraudcore.kafka.types import Committed, TopicPartition, label

log = logging.getLogger(__name__)

# Rebuilding one partition's window gives up (and is tried again) after this long.
RESTORE_TIMEOUT_SECONDS = 120.0


class VelocityWindows:
    """One window per assigned partition, rebuilt by restore() before the partition is used."""

    def __init__(
        self,
        rule: VelocityRule,
        new_reader: Callable[[], PartitionReader],
        max_value_bytes: int,
    ) -> None:
        self.rule = rule
        self._new_reader = new_reader
        self._reader: PartitionReader | None = None  # made at the first restore, then kept
        self._max_value_bytes = max_value_bytes
        self._windows: dict[TopicPartition, PartitionWindow] = {}

    def window(self, tp: TopicPartition) -> PartitionWindow:
        window = self._windows.get(tp)
        if window is None:  # never restored: nothing committed before it
            window = self._windows[tp] = PartitionWindow(self.rule)
        return window

    def metadata(self, tp: TopicPartition, next_offset: int) -> str:
        """What to commit with `next_offset` of `tp`, everything before it counted."""
        return self.window(tp).checkpoint(next_offset).encode()

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Revoked: their next owner rebuilds them from the commit."""
        for tp in partitions:
            self._windows.pop(tp, None)

    def restore(self, tp: TopicPartition, committed: Committed | None) -> None:
        """Rebuild the window of `tp` at its committed offset from the input. Raises
        ClientError (from the reader) when the input cannot be read; then try again."""
        self._windows[tp] = self._rebuilt(tp, committed)

    def _rebuilt(self, tp: TopicPartition, committed: Committed | None) -> PartitionWindow:
        rule = self.rule
        if committed is None:
            return PartitionWindow(rule)  # nothing processed yet
        checkpoint = WindowCheckpoint.decode(committed.metadata)
        where = label(tp)
        if checkpoint is None:
            log.warning(
                "%s: the commit at offset %d has no velocity checkpoint (made with the rule "
                "off?); its window starts empty there",
                where,
                committed.offset,
            )
            return PartitionWindow(rule)
        if checkpoint.window_ms != rule.window_ms:
            log.warning(
                "%s: the window was %gs when committed and is %gs now; it is rebuilt from what "
                "the old one held",
                where,
                checkpoint.window_ms / 1000,
                rule.window_seconds,
            )
        if self._reader is None:
            self._reader = self._new_reader()
        started = time.monotonic()
        records = self._reader.read(
            tp, checkpoint.replay_from, committed.offset, RESTORE_TIMEOUT_SECONDS
        )
        window = replay(
            rule, ((r.value, r.timestamp, r.offset) for r in records), self._max_value_bytes
        )
        log.info(
            "restored the velocity window of %s: offsets %d to %d read, %d transactions of %d "
            "accounts held, in %.3fs",
            where,
            checkpoint.replay_from,
            committed.offset,
            len(window),
            window.accounts,
            time.monotonic() - started,
        )
        return window

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
