"""The topics are declared once (fraudcore/core/topics.py); the shell scripts' copy is in step."""

from __future__ import annotations

from detector.clients import required_topics
from detector.config import DetectorSettings
from fraudcore.core import topics
from tests.kafka_helpers import REPO_ROOT


def test_the_committed_topic_list_is_what_the_module_generates() -> None:
    committed = (REPO_ROOT / "kafka" / "topics.txt").read_text()
    regenerate = "python -m fraudcore.core.topics > kafka/topics.txt"
    assert committed == topics.topic_list(), f"out of step: run {regenerate}"


def test_the_detector_checks_the_declared_topics_under_their_default_names() -> None:
    assert required_topics(DetectorSettings()) == topics.default_topics()


def test_only_the_dead_letter_topic_takes_large_records() -> None:
    configs = {spec.name: spec.configs for spec in topics.default_topics()}
    assert configs.pop(topics.DEAD_LETTER_TOPIC) == {"max.message.bytes": "2097152"}
    assert all(not config for config in configs.values())
