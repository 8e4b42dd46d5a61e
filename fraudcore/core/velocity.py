"""The velocity rule: more than N valid transactions of one source account within W seconds.

Counted per input partition, in offset order, by the Kafka record timestamp t (ms). A
transaction's count is 1, for itself, plus the earlier valid transactions of its account in the
partition whose timestamps lie in (t - W, t]; the rule fires when the count exceeds N. Invalid
(dead-lettered) records never count. The generator keys records by source account, so "in the
partition" is "of the account"; unkeyed input spreads an account over partitions, and each
partition then counts its share only.

Out-of-order timestamps. The partition's stream time S is the greatest timestamp of its valid
transactions so far (this one included). What is older than S - 2W is forgotten, so a
transaction counts those in (max(t - W, S - 2W), t]: exactly (t - W, t] unless t lags S by more
than W. That keeps the state to the last 2W of stream time, and an account with nothing there
costs nothing.

Exactly-once state. The state of a partition at its committed offset is a function of the input
before that offset, so it is rebuilt from the input rather than kept in a changelog: each commit
carries, in its offset metadata, the first offset still held (`checkpoint`), and a new owner (or
the same detector after an abort) replays from that offset up to the committed one
(fraudcore/core/rule.py `replay`).
That replay sees every record the state holds, in any timestamp order, since nothing before the
first held offset is held; and it finds the stream time again, because the record that set it
is always held (its timestamp is S, which is after S - 2W).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass

CHECKPOINT_VERSION = "velocity/1"


@dataclass(frozen=True, slots=True)
class VelocityRule:
    """VELOCITY_MAX_TRANSACTIONS (N >= 1) and VELOCITY_WINDOW_SECONDS (W > 0)."""

    max_transactions: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.max_transactions < 1:
            raise ValueError(f"max_transactions must be >= 1, got {self.max_transactions}")
        if not 0 < self.window_seconds < float("inf"):
            raise ValueError(f"window_seconds must be > 0 and finite, got {self.window_seconds}")

    @property
    def window_ms(self) -> float:
        return self.window_seconds * 1000


@dataclass(frozen=True, slots=True)
class WindowCheckpoint:
    """What a commit records of a partition's window: where its replay starts, and the window
    it was made with (a restore under another W says so)."""

    replay_from: int
    window_ms: float

    def encode(self) -> str:
        return f"{CHECKPOINT_VERSION} {self.replay_from} {self.window_ms!r}"

    @classmethod
    def decode(cls, text: str | None) -> WindowCheckpoint | None:
        """The checkpoint in a commit's metadata; None when there is none (or not ours)."""
        parts = (text or "").split(" ")
        if len(parts) != 3 or parts[0] != CHECKPOINT_VERSION:
            return None
        try:
            return cls(int(parts[1]), float(parts[2]))
        except ValueError:
            return None


class _Account:
    """One account's timestamps held, sorted (they may come out of order), 8 bytes each."""

    __slots__ = ("name", "stamps")

    def __init__(self, name: str, timestamp: int) -> None:
        self.name = name
        self.stamps = array("q", (timestamp,))


# The arrivals' consumed front is cut off once it is this long and half of what is there.
_COMPACT_AFTER = 4096


class PartitionWindow:
    """One input partition's recent valid transactions, by account.

    Lean because it holds up to 2W of the partition's input: per transaction held, its
    timestamp twice and its offset, in arrays (8 bytes each, no int objects), and a reference
    to its account; per account, one small object, its name and an array.
    """

    __slots__ = (
        "_accounts",
        "_head",
        "_limit",
        "_offsets",
        "_owners",
        "_span",
        "_times",
        "_window",
        "_window_ms",
        "stream_time",
    )

    def __init__(self, rule: VelocityRule) -> None:
        self._limit = rule.max_transactions
        self._window_ms = rule.window_ms
        # Timestamps are whole ms, so `ts > t - W` is `ts > t - ceil(W)`: integers compare
        # faster than floats, and the arrays hold integers.
        self._window = math.ceil(rule.window_ms)
        self._span = math.ceil(2 * rule.window_ms)  # what is at or before S - span is forgotten
        self.stream_time: int | None = None
        self._accounts: dict[str, _Account] = {}
        # What is held, in offset order, from index _head on: timestamp, offset and account of
        # each. Forgetting goes from the front, so the first offset held is always the front's.
        self._times = array("q")
        self._offsets = array("q")
        self._owners: list[_Account] = []  # before _head: forgotten, freed at compaction
        self._head = 0

    def fires(self, account: str, timestamp: int, offset: int) -> bool:
        """Count one valid transaction; True when its account is over the limit."""
        stream_time = self.stream_time
        if stream_time is None or timestamp > stream_time:
            stream_time = self.stream_time = timestamp
        horizon = stream_time - self._span
        held = self._accounts.get(account)
        count = 1
        in_order = True
        if held is not None:
            stamps = held.stamps
            low = max(timestamp - self._window, horizon)
            in_order = timestamp >= stamps[-1]
            # In order (the usual case), everything held is at or before the timestamp.
            below = len(stamps) if in_order else bisect_right(stamps, timestamp)
            count += below - bisect_right(stamps, low)
        if timestamp > horizon:
            if held is None:
                held = self._accounts[account] = _Account(account, timestamp)
            elif in_order:
                stamps.append(timestamp)
            else:
                insort(stamps, timestamp)
            self._times.append(timestamp)
            self._offsets.append(offset)
            self._owners.append(held)
        times, head = self._times, self._head
        if head < len(times) and times[head] <= horizon:
            self._forget(horizon)
        return count > self._limit

    def _forget(self, horizon: int) -> None:
        """Drop what lies at or before the horizon, from the front of the arrivals. An older
        timestamp behind a newer one waits for it; until then it is held but never counted."""
        times, owners, accounts = self._times, self._owners, self._accounts
        head, end = self._head, len(times)
        while head < end and times[head] <= horizon:
            held = owners[head]
            head += 1
            stamps = held.stamps
            if len(stamps) == 1:
                del accounts[held.name]
            else:
                del stamps[bisect_left(stamps, times[head - 1])]
        if head >= _COMPACT_AFTER and 2 * head >= end:
            del times[:head]
            del self._offsets[:head]
            del owners[:head]
            head = 0
        self._head = head

    def __len__(self) -> int:
        """Transactions held."""
        return len(self._times) - self._head

    @property
    def accounts(self) -> int:
        """Accounts with anything held."""
        return len(self._accounts)

    def checkpoint(self, next_offset: int) -> WindowCheckpoint:
        """The checkpoint for a commit at `next_offset`, everything before it counted."""
        replay_from = self._offsets[self._head] if len(self) else next_offset
        return WindowCheckpoint(replay_from, self._window_ms)
