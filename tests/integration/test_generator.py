"""The generator on a real broker: exact counts, keys, reproducibility and its achieved rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kafka_helpers import Service, Topics, consume

pytestmark = pytest.mark.integration


def run_generator(
    bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    *,
    count: int,
    rate: float,
    seed: int | None = None,
) -> Service:
    env = {**topics.env(bootstrap), "TRANSACTIONS_COUNT": str(count)}
    env["TRANSACTIONS_PER_SECOND"] = str(rate)
    if seed is not None:
        env["RANDOM_SEED"] = str(seed)
    service = Service.module("generator", env, tmp_path)
    assert service.wait(timeout=120) == 0, service.output()
    return service


def test_count_mode_sends_exactly_n_keyed_by_source(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    run_generator(bootstrap, topics, tmp_path, count=3000, rate=5000)
    records = consume(bootstrap, [topics.input], expected=3000, settle=2.0)
    assert len(records) == 3000
    values = [json.loads(r.value) for r in records]
    assert len({v["id"] for v in values}) == 3000
    assert all(r.key == json.loads(r.value)["source"].encode() for r in records)
    assert {r.partition for r in records} == {0, 1, 2}  # the input topic has 3 partitions
    assert all(v["currency"] == "EUR" and v["timestamp"].endswith("Z") for v in values)


def test_random_seed_makes_the_stream_reproducible(bootstrap: str, tmp_path: Path) -> None:
    streams = []
    for _ in range(2):
        topics = Topics.fresh()
        run_generator(bootstrap, topics, tmp_path, count=200, rate=2000, seed=11)
        records = consume(bootstrap, [topics.input], expected=200)
        streams.append(sorted((json.loads(r.value)["id"], r.key) for r in records))
    assert streams[0] == streams[1]
    assert len(streams[0]) == 200


@pytest.mark.slow
@pytest.mark.parametrize(("rate", "seconds"), [(10, 6), (500, 5), (4000, 5)])
def test_achieved_rate_is_within_2_percent(
    bootstrap: str, topics: Topics, tmp_path: Path, rate: int, seconds: int
) -> None:
    count = rate * seconds + 1
    run_generator(bootstrap, topics, tmp_path, count=count, rate=rate)
    records = consume(bootstrap, [topics.input], expected=count)
    assert len(records) == count
    stamps = sorted(r.timestamp for r in records)  # producer CreateTime, in ms
    achieved = (count - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert achieved == pytest.approx(rate, rel=0.02)
