"""The rule set's state for each assigned input partition, and how it is found again.

The state is part of the detector's committed state. Its checkpoint (fraudcore/core/rules/
ruleset.py RulesCheckpoint) is committed with the partition's offset, and the changelog rules'
changes are sent in the same batch as the outputs (the same Kafka transaction in exactly_once).
Whenever the detector goes back to a committed offset (a partition newly assigned, a failed
batch) the state is rebuilt there, before the partition's records are processed: the REPLAY
rules by reading the input again from the checkpoint up to the offset, the CHANGELOG rules by
reading their changelog partition (the input's partition number) to its end. It is then exactly
what an uninterrupted detector would hold at that offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from fraudcore.core.rules.ruleset import PartitionRules, RulesCheckpoint, RuleSet
from fraudcore.errors import RetriableClientError
from fraudcore.kafka.reading import PartitionReader
from fraudcore.kafka.types import Committed, PartitionedOutput, TopicPartition, label

log = logging.getLogger(__name__)

# Rebuilding one partition's state gives up (and is tried again) after this long.
RESTORE_TIMEOUT_SECONDS = 120.0
# On every changelog record: the input offset committed with it. A restore reads the changelog
# until it has seen the last batch the checkpoint says was written.
HEADER_INPUT_OFFSET = "input.offset"
_WAIT_SECONDS = 0.1


class RuleStates:
    """The state of each assigned partition, rebuilt by restore() before the partition is used.
    `changelog_topics`: one per CHANGELOG rule of the set, in the set's order."""

    def __init__(
        self,
        rule_set: RuleSet,
        new_reader: Callable[[], PartitionReader] | None,
        max_value_bytes: int,
        changelog_topics: Sequence[str] = (),
    ) -> None:
        if len(changelog_topics) != len(rule_set.changelogged):
            raise ValueError("one changelog topic is needed per changelog rule")
        if rule_set.stateful and new_reader is None:
            raise ValueError("stateful rules need new_reader to rebuild their state")
        self.rule_set = rule_set
        self._new_reader = new_reader
        self._reader: PartitionReader | None = None  # made at the first restore, then kept
        self._max_value_bytes = max_value_bytes
        self._changelog_topics = tuple(changelog_topics)
        self._partitions: dict[TopicPartition, PartitionRules] = {}

    def partition(self, tp: TopicPartition) -> PartitionRules:
        rules = self._partitions.get(tp)
        if rules is None:  # never restored: nothing committed before it
            rules = self._partitions[tp] = self.rule_set.partition()
        return rules

    def metadata(self, tp: TopicPartition, next_offset: int) -> str:
        """What to commit with `next_offset` of `tp`, everything before it counted."""
        if not self.rule_set.stateful:
            return ""
        return self.partition(tp).checkpoint(next_offset).encode()

    def changelog(self, tp: TopicPartition, next_offset: int) -> list[PartitionedOutput]:
        """The changelog records of what changed in `tp`'s state since the last call: each to
        its rule's changelog, in the input's partition number."""
        rules = self.partition(tp)
        header = [(HEADER_INPUT_OFFSET, str(next_offset).encode())]
        out: list[PartitionedOutput] = []
        for (_, state), topic in zip(rules.changelog_states(), self._changelog_topics, strict=True):
            target = TopicPartition(topic, tp.partition)
            out += [(target, key.encode(), value, header) for key, value in state.changes()]
        if out:
            rules.changelog_at = next_offset
        return out

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Revoked: their next owner rebuilds them from the commit."""
        for tp in partitions:
            self._partitions.pop(tp, None)

    def restore(self, tp: TopicPartition, committed: Committed | None) -> None:
        """Rebuild the state of `tp` at its committed offset. Raises ClientError (from the
        reader) when the input or a changelog cannot be read; then try again."""
        self._partitions[tp] = self._rebuilt(tp, committed)

    def _rebuilt(self, tp: TopicPartition, committed: Committed | None) -> PartitionRules:
        rules = self.rule_set.partition()
        if committed is None or not self.rule_set.stateful:
            return rules  # nothing processed yet, or nothing to rebuild
        checkpoint = RulesCheckpoint.decode(committed.metadata)
        where = label(tp)
        if checkpoint is None:
            log.warning(
                "%s: the commit at offset %d has no rules checkpoint (made without stateful "
                "rules?); their state starts empty there",
                where,
                committed.offset,
            )
            return rules
        if self._reader is None:
            assert self._new_reader is not None  # checked in __init__
            self._reader = self._new_reader()
        started = time.monotonic()
        if self.rule_set.replayed:
            if checkpoint.replay_window_ms != self.rule_set.replay_window_ms:
                log.warning(
                    "%s: the longest window was %gs when committed and is %gs now; the state is "
                    "rebuilt from what the old one held",
                    where,
                    checkpoint.replay_window_ms / 1000,
                    self.rule_set.replay_window_ms / 1000,
                )
            records = self._reader.read(
                tp, checkpoint.replay_from, committed.offset, RESTORE_TIMEOUT_SECONDS
            )
            rules.replay(((r.value, r.timestamp, r.offset) for r in records), self._max_value_bytes)
            windows = rules.replay_states()
            log.info(
                "restored the windows of %s: offsets %d to %d read, %d transactions of %d "
                "accounts held, in %.3fs",
                where,
                checkpoint.replay_from,
                committed.offset,
                max(len(window) for window in windows),
                max(window.accounts for window in windows),
                time.monotonic() - started,
            )
        if checkpoint.stream_time is not None and (
            rules.stream_time is None or checkpoint.stream_time > rules.stream_time
        ):
            rules.stream_time = checkpoint.stream_time
        rules.changelog_at = checkpoint.changelog_at
        if self.rule_set.changelogged:
            self._load_changelogs(tp, rules, checkpoint.changelog_at)
        return rules

    def _load_changelogs(
        self, tp: TopicPartition, rules: PartitionRules, changelog_at: int | None
    ) -> None:
        """Read each changelog partition of `tp` to its end, and on until the last batch that
        the checkpoint names is seen: that batch's transaction markers may reach a changelog a
        moment after they reach the committed offsets."""
        assert self._reader is not None
        reader, started = self._reader, time.monotonic()
        deadline = started + RESTORE_TIMEOUT_SECONDS
        parts = [
            (state, TopicPartition(topic, tp.partition))
            for (_, state), topic in zip(
                rules.changelog_states(), self._changelog_topics, strict=True
            )
        ]
        positions = {part: reader.bounds(part)[0] for _, part in parts}
        read, seen = 0, -1
        while True:
            for state, part in parts:
                end = reader.bounds(part)[1]
                left = max(deadline - time.monotonic(), 0.001)
                for record in reader.read(part, positions[part], end, left):
                    state.load(record.key.decode() if record.key else "", record.value)
                    read += 1
                    for name, value in record.headers or ():
                        if name == HEADER_INPUT_OFFSET:
                            seen = max(seen, int(value))
                positions[part] = end
            if changelog_at is None or seen >= changelog_at:
                break
            if time.monotonic() > deadline:
                raise RetriableClientError(
                    f"{label(tp)}: the changelog of its batch at input offset {changelog_at} "
                    f"is not readable after {RESTORE_TIMEOUT_SECONDS:g}s"
                )
            time.sleep(_WAIT_SECONDS)
        log.info(
            "restored the changelog state of %s: %d records read, %s accounts held, in %.3fs",
            label(tp),
            read,
            "+".join(str(len(state)) for state, _ in parts),
            time.monotonic() - started,
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
