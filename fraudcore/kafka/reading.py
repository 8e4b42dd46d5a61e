"""Reading outside any consumer group, read_committed, on a Reader of the port: whole topics up
to where they ended when the reading started (the audit), and ranges of one partition (the
detector rebuilding its rules' state from the input and from changelogs). Client-independent:
any adapter's Reader will do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence

from fraudcore.errors import RetriableClientError
from fraudcore.kafka.ports import Reader
from fraudcore.kafka.types import ConsumedRecord, TopicPartition, label

log = logging.getLogger(__name__)

READ_POLL_MS = 200


class IncompleteReadError(RuntimeError):
    """A topic could not be read up to the end offsets taken at the start."""


class TopicReader:
    """Reads topics up to the end offsets found when it opens.

    End offsets are taken for the topics in the order given, outputs before the input, so
    that every output counted has its input counted too. Topics are then read one set at a
    time, so the outputs can be streamed through the matcher instead of held in memory.
    """

    def __init__(self, reader: Reader, names: Sequence[str], timeout: float) -> None:
        self._timeout = timeout
        self._reader = reader
        try:
            existing = reader.topics()
            self.missing = [name for name in dict.fromkeys(names) if name not in existing]
            self._ends: dict[TopicPartition, int] = {}
            for name in dict.fromkeys(names):
                if name not in self.missing:
                    self._ends.update(reader.end_offsets(reader.partitions(name)))
        except BaseException:
            reader.close()
            raise

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._reader.close()

    @property
    def ends(self) -> Mapping[TopicPartition, int]:
        """The end offsets taken at the start, of every partition of the existing topics."""
        return self._ends

    def offsets_for_times(
        self, times_ms: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The first offset at or after each time; the end offset where there is none."""
        found = self._reader.offsets_for_times(times_ms)
        starts: dict[TopicPartition, int] = {}
        for tp in times_ms:
            offset = found.get(tp)
            starts[tp] = self._ends[tp] if offset is None else offset
        return starts

    def records(
        self, names: Sequence[str], starts: Mapping[TopicPartition, int] | None = None
    ) -> Iterator[ConsumedRecord]:
        """Every committed record of these topics, up to the end offsets taken at the start;
        from `starts` where it names a partition, else from the beginning."""
        ends = {tp: end for tp, end in self._ends.items() if tp.topic in names}
        if not ends:  # missing topics read as empty
            return
        reader = self._reader
        reader.assign(list(ends))
        reader.seek_to_beginning(list(ends))
        for tp, offset in (starts or {}).items():
            if tp in ends:
                reader.seek(tp, offset)
        deadline = time.monotonic() + self._timeout
        remaining = {tp for tp, end in ends.items() if end > (starts or {}).get(tp, 0)}
        while remaining:
            if time.monotonic() > deadline:
                behind = ", ".join(
                    f"{label(tp)} at {reader.position(tp)} of {ends[tp]}"
                    for tp in sorted(remaining)
                )
                raise IncompleteReadError(f"not read to the end in {self._timeout:g}s: {behind}")
            fetched = reader.poll(READ_POLL_MS)
            for tp, batch in fetched.items():
                end = ends[tp]
                for r in batch:
                    if r.offset < end:
                        yield r
            # Only the partitions just read are asked where they are, until a poll brings
            # nothing: before a partition's first fetch, a client may ask the broker (slow).
            got = [tp for tp, batch in fetched.items() if batch and tp in remaining]
            for tp in got or list(remaining):
                if reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    reader.pause([tp])
        reader.resume(list(ends))


class PartitionReader:
    """Reads offset ranges of single partitions; one client, kept open for many reads."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    def close(self) -> None:
        self._reader.close()

    def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """The first offset of `tp` still held, and its end (the last stable offset)."""
        reader = self._reader
        return reader.beginning_offsets([tp])[tp], reader.end_offsets([tp])[tp]

    def read(
        self, tp: TopicPartition, start: int, end: int, timeout: float
    ) -> Iterator[ConsumedRecord]:
        """The committed records of `tp` from offset `start` up to `end` (exclusive). Raises
        RetriableClientError when they cannot all be read within `timeout` seconds."""
        if start >= end:
            return
        reader = self._reader
        reader.assign([tp])
        if reader.beginning_offsets([tp])[tp] > start:
            log.warning("%s: offsets from %d are gone (retention), read from the log start",
                        label(tp), start)  # fmt: skip
        reader.seek(tp, start)
        deadline = time.monotonic() + timeout
        while reader.position(tp) < end:
            if time.monotonic() > deadline:
                raise RetriableClientError(
                    f"{label(tp)} not read from {start} to {end} in {timeout:g}s "
                    f"(at {reader.position(tp)})"
                )
            for batch in reader.poll(READ_POLL_MS).values():
                for record in batch:
                    if record.offset >= end:
                        return
                    yield record
