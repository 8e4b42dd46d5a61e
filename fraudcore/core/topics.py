"""The topics, declared once: their default names, partition counts and configs.

The services' settings take their defaults from here and check the topics at start-up with
these specs; the local broker's secure setup, the compose kafka-init and the tests use them too
(`python -m fraudcore.core.topics` prints them; tests/unit/test_topics.py keeps the copies
outside Python in step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TRANSACTIONS_TOPIC = "queueing.transactions"
LEGIT_TOPIC = "streaming.transactions.legit"
FRAUD_TOPIC = "streaming.transactions.fraud"
DEAD_LETTER_TOPIC = "streaming.transactions.invalid"
PARTITIONS = 3

# Dead letters keep the original bytes, so the topic accepts anything the input could hold.
DEAD_LETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    # ACL operations the service needs on the topic ("READ", "WRITE"), checked at start-up.
    access: tuple[str, ...] = ()


def generator_topics(transactions: str, partitions: int) -> list[TopicSpec]:
    return [TopicSpec(transactions, partitions, access=("WRITE",))]


def detector_topics(
    transactions: str, legit: str, fraud: str, dead_letter: str, partitions: int
) -> list[TopicSpec]:
    return [
        TopicSpec(transactions, partitions, access=("READ",)),
        TopicSpec(legit, partitions, access=("WRITE",)),
        TopicSpec(fraud, partitions, access=("WRITE",)),
        TopicSpec(
            dead_letter,
            partitions,
            {"max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)},
            access=("WRITE",),
        ),
    ]


def default_topics() -> list[TopicSpec]:
    """Every topic of the stack under its default name: the input first."""
    return detector_topics(
        TRANSACTIONS_TOPIC, LEGIT_TOPIC, FRAUD_TOPIC, DEAD_LETTER_TOPIC, PARTITIONS
    )


def main() -> None:
    """One line per topic: name, partitions, then config=value pairs (for shell scripts)."""
    for topic in default_topics():
        configs = " ".join(f"{key}={value}" for key, value in topic.configs.items())
        print(f"{topic.name} {topic.partitions} {configs}".rstrip())


if __name__ == "__main__":
    main()
