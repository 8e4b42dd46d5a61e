"""The bench's CPU per record (bench/kafka_ops.py Progress): measured over a span that holds the
work, also when one commit held the whole input."""

from __future__ import annotations

from bench.kafka_ops import Progress


def test_cpu_per_record_spans_from_the_last_sample_before_progress() -> None:
    progress = Progress(100, [(0.0, 0, 1.0), (0.1, 0, 1.2), (0.2, 50, 1.3), (0.3, 100, 1.4)])
    progress.finished = True
    assert progress.cpu_per_record_us() == 1e6 * (1.4 - 1.2) / 100


def test_cpu_per_record_reaches_back_when_the_commit_came_an_interval_after_the_work() -> None:
    # The work (0.5 s of CPU) fell before 0.2 s; the commit that showed it came at 0.3 s.
    progress = Progress(100, [(0.0, 0, 1.0), (0.1, 0, 1.0), (0.2, 0, 1.5), (0.3, 100, 1.5)])
    progress.finished = True
    assert progress.cpu_per_record_us() == 1e6 * (1.5 - 1.0) / 100


def test_cpu_per_record_is_unknown_without_cpu_readings() -> None:
    progress = Progress(100, [(0.0, 0, None), (0.1, 100, None)])
    progress.finished = True
    assert progress.cpu_per_record_us() is None
