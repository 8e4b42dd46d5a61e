"""FRAUD_SCENARIOS on a real broker: the sim.label header is on exactly the injected records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fraudcore.core.scenarios import LABEL_HEADER, SCENARIOS, RealisticSource
from tests.kafka_helpers import Service, Topics, consume

pytestmark = pytest.mark.integration

COUNT = 3000
SEED = 17
SHARES = dict.fromkeys(SCENARIOS, 0.01)


def test_the_label_header_is_exactly_on_the_injected_records(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    env = {
        **topics.env(bootstrap),
        "TRANSACTIONS_COUNT": str(COUNT),
        "TRANSACTIONS_PER_SECOND": "5000",
        "RANDOM_SEED": str(SEED),
        "GENERATOR_PROFILE": "realistic",
        "FRAUD_SCENARIOS": ",".join(f"{name}:{share}" for name, share in SHARES.items()),
    }
    service = Service.module("generator", env, tmp_path)
    assert service.wait(timeout=120) == 0, service.output()
    records = consume(bootstrap, [topics.input], expected=COUNT, settle=2.0)
    assert len(records) == COUNT
    # The same seed in the pure core says which record (by id) carries which label.
    expected = {tx.id: label for tx, label in RealisticSource(SEED, scenarios=SHARES).take(COUNT)}
    seen: set[str] = set()
    for record in records:
        value = json.loads(record.value)
        labels = [v.decode() for name, v in record.headers or [] if name == LABEL_HEADER]
        label = expected[value["id"]]
        assert labels == ([] if label is None else [label]), value
        assert "label" not in json.dumps(value)  # the value stays a plain transaction
        seen.update(labels)
    assert seen == set(SCENARIOS)
