"""The Kafka port's contract (fraudcore/kafka/ports.py), held against every adapter on the real
broker: poll batches, committed positions with metadata, transactions with offsets, abort,
fencing, delivery counts and failures, and a rebalance callback's error coming out of poll()
as it was raised. The independent checker is kafka-python itself (tests/kafka_helpers.py)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from fraudcore.config import CommonSettings
from fraudcore.errors import ClientError, FencedError
from fraudcore.kafka.confluent import ConfluentDriver
from fraudcore.kafka.kafka_python import KafkaPythonDriver
from fraudcore.kafka.ports import Consumer, Driver, GroupConsumerConfig, Producer, ProducerConfig
from fraudcore.kafka.reading import PartitionReader
from fraudcore.kafka.types import Committed, Fetched, TopicPartition
from kafka import KafkaProducer
from tests.kafka_helpers import consume, create_topic, produce, unique_name, wait_until

pytestmark = pytest.mark.integration

# How long the test's transaction keeps a partition's offsets pending after it is assigned.
TRANSACTION_LEFT_OPEN_SECONDS = 2.0

# Each adapter, and the confluent one again on KIP-848's consumer group protocol: the contract
# holds on either protocol (the settings carry the protocol to the adapter).
VARIANTS: dict[str, tuple[Driver, dict[str, Any]]] = {
    "kafka-python": (
        KafkaPythonDriver(),
        {"kafka_client": "kafka-python", "kafka_group_protocol": "classic"},
    ),
    "confluent": (
        ConfluentDriver(),
        {"kafka_client": "confluent", "kafka_group_protocol": "classic"},
    ),
    "confluent-consumer-protocol": (
        ConfluentDriver(),
        {"kafka_client": "confluent", "kafka_group_protocol": "consumer"},
    ),
}


@pytest.fixture(params=list(VARIANTS.values()), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[Driver, dict[str, Any]]:
    made: tuple[Driver, dict[str, Any]] = request.param
    return made


@pytest.fixture
def driver(variant: tuple[Driver, dict[str, Any]]) -> Driver:
    return variant[0]


@pytest.fixture
def settings(bootstrap: str, variant: tuple[Driver, dict[str, Any]]) -> CommonSettings:
    return CommonSettings(kafka_broker_url=bootstrap, **variant[1])


@pytest.fixture
def topic(bootstrap: str) -> str:
    name = unique_name("contract")
    create_topic(bootstrap, name, partitions=2)
    return name


def group_member(
    driver: Driver, settings: CommonSettings, group: str, max_poll_records: int = 500
) -> Consumer:
    config = GroupConsumerConfig(
        group, session_timeout_ms=10_000, max_poll_records=max_poll_records
    )
    return driver.consumer(settings, "contract", config)


def poll_until(consumer: Consumer, count: int, timeout: float = 30) -> list[Fetched]:
    polls: list[Fetched] = []

    def enough() -> bool:
        polls.append(consumer.poll(timeout_ms=200))
        return sum(len(fetched) for fetched in polls) >= count

    wait_until(enough, timeout, f"{count} records polled", interval=0)
    return polls


@pytest.fixture
def transactional(driver: Driver, settings: CommonSettings) -> Iterator[Producer]:
    producer = driver.producer(
        settings, "contract", ProducerConfig(transactional_id=unique_name("contract-tx"))
    )
    yield producer
    producer.discard()


def test_a_poll_returns_batches_by_partition_and_says_when_it_is_full(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str
) -> None:
    produce(bootstrap, topic, [(f"k{n}".encode(), f"v{n}".encode()) for n in range(40)])
    consumer = group_member(driver, settings, unique_name("g"), max_poll_records=7)
    assigned: list[set[TopicPartition]] = []
    consumer.subscribe(topic, lambda _revoked: None, assigned.append)
    try:
        polls = poll_until(consumer, 40)
        records = [r for fetched in polls for batch in fetched.records.values() for r in batch]
        assert sorted(r.value or b"" for r in records) == sorted(
            f"v{n}".encode() for n in range(40)
        )
        for fetched in polls:
            assert len(fetched) <= 7
            assert fetched.full == (len(fetched) == 7)
            for tp, batch in fetched.records.items():
                assert {(r.topic, r.partition) for r in batch} == {tp}
                offsets = [r.offset for r in batch]
                assert offsets == sorted(offsets)
        # (the group may form twice while the new topic's metadata spreads: the last one counts)
        assert assigned[-1] == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        assert consumer.assignment() == assigned[-1]
    finally:
        consumer.close()


def test_a_poll_returns_what_has_arrived_without_waiting_for_a_full_batch(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str
) -> None:
    """The poll timeout bounds the wait for the first record, not for a full batch: a record
    that arrives is handed over at once, or latency at a low rate is the whole timeout."""
    consumer = group_member(driver, settings, unique_name("g"), max_poll_records=500)
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    try:
        produce(bootstrap, topic, [(b"k", b"first")])
        poll_until(consumer, 1)
        produce(bootstrap, topic, [(b"k", b"second")])
        started = time.monotonic()
        fetched = consumer.poll(timeout_ms=20_000)
        waited = time.monotonic() - started
        assert [r.value for batch in fetched.records.values() for r in batch] == [b"second"]
        assert not fetched.full
        assert waited < 10, f"poll held an arrived record for {waited:.1f} s"
    finally:
        consumer.close()


def test_a_committed_position_keeps_its_metadata(
    driver: Driver, settings: CommonSettings, topic: str
) -> None:
    group, tp = unique_name("g"), TopicPartition(topic, 0)
    consumer = group_member(driver, settings, group)
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    try:
        wait_until(lambda: consumer.poll(200) is not None and bool(consumer.assignment()), 30,
                   "an assignment")  # fmt: skip
        assert consumer.committed(tp) is None
        consumer.commit({tp: Committed(5, "velocity/1 3 10000")})
        assert consumer.committed(tp) == Committed(5, "velocity/1 3 10000")
    finally:
        consumer.close()


def test_a_seek_holds_while_an_open_transaction_holds_the_partitions_offsets(
    driver: Driver, settings: CommonSettings, bootstrap: str
) -> None:
    """A member that takes over partitions whose offsets a transaction still holds (a killed
    detector's, until the broker aborts it; KIP-447) seeks them at once, as the detector's
    restore does. librdkafka starts a partition's fetcher only once those offsets are stable and
    refused a seek before that (_STATE), which stopped the detector with a traceback."""
    topic, group = unique_name("contract-pending"), unique_name("g")
    create_topic(bootstrap, topic, partitions=1)
    produce(bootstrap, topic, [(None, f"v{n}".encode()) for n in range(10)])
    tp = TopicPartition(topic, 0)
    holder = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique_name("holder"))
    holder.init_transactions()
    holder.begin_transaction()
    pending = {KafkaTopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)}
    holder.send_offsets_to_transaction(pending, group)
    consumer = group_member(driver, settings, group)
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    ending = threading.Timer(TRANSACTION_LEFT_OPEN_SECONDS, holder.commit_transaction)
    try:
        wait_until(lambda: consumer.poll(200) is not None and tp in consumer.assignment(), 30,
                   "an assignment")  # fmt: skip
        ending.start()
        consumer.seek(tp, 4)  # while the transaction is still open
        ending.join()
        polls = poll_until(consumer, 6)
        values = [r.value for fetched in polls for r in fetched.records.get(tp, [])]
        assert values == [f"v{n}".encode() for n in range(4, 10)]
    finally:
        ending.cancel()
        consumer.close()
        holder.close()


def test_a_member_whose_polls_are_shorter_than_a_rebalance_is_assigned_a_new_topic(
    driver: Driver, settings: CommonSettings, topic: str
) -> None:
    """The topic was created just before the member joined. kafka-python's first join comes
    before its metadata holds the topic (no partitions) and its rejoin, once the metadata
    arrives, outlasts a 5 ms poll: unfinished, it left the member with no partitions for good
    (fraudcore/kafka/kafka_python/workarounds.py, resume_unfinished_join)."""
    consumer = group_member(driver, settings, unique_name("g"))
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    every = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
    try:
        wait_until(lambda: consumer.poll(5) is not None and consumer.assignment() == every, 10,
                   "both partitions assigned", interval=0)  # fmt: skip
    finally:
        consumer.close()


def test_a_transaction_commits_outputs_and_offsets_together_and_an_abort_leaves_none(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str, transactional: Producer
) -> None:
    out = unique_name("contract-out")
    create_topic(bootstrap, out, partitions=1)
    produce(bootstrap, topic, [(b"k", b"in")])
    group, tp = unique_name("g"), TopicPartition(topic, 0)
    consumer = group_member(driver, settings, group)
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    try:
        poll_until(consumer, 1)
        transactional.begin_transaction()
        assert transactional.send([(out, b"k", b"aborted", None)]) == 1
        transactional.abort_transaction(10)
        aborted = transactional.deliveries()  # an aborted record is not delivered
        assert (aborted.acknowledged, aborted.failed) == (0, 1)
        transactional.begin_transaction()
        transactional.send([(out, b"k", b"committed", [("h", b"1")])])
        offsets = {tp: Committed(1, "meta"), TopicPartition(topic, 1): Committed(0, "")}
        transactional.send_offsets_to_transaction(offsets, consumer.group_metadata(), 10)
        transactional.flush(10)
        assert transactional.deliveries() == (1, 0, None)
        transactional.commit_transaction(10)
        seen = consume(bootstrap, [out], expected=1, settle=1.0)
        assert [(r.value, list(r.headers)) for r in seen] == [(b"committed", [("h", b"1")])]
        assert consumer.committed(tp) == Committed(1, "meta")
    finally:
        consumer.close()


def test_back_to_back_transactions_do_not_wait_out_a_retry_backoff(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str, transactional: Producer
) -> None:
    """A transaction opened right after a commit finds the coordinator still writing the last
    one's markers: AddOffsetsToTxn answers CONCURRENT_TRANSACTIONS, and the client retries after
    its retry backoff. A 100 ms backoff there held every exactly_once batch 100 ms."""
    out = unique_name("contract-out")
    create_topic(bootstrap, out, partitions=1)
    produce(bootstrap, topic, [(b"k", b"in")])
    consumer = group_member(driver, settings, unique_name("g"))
    consumer.subscribe(topic, lambda _revoked: None, lambda _assigned: None)
    tp = TopicPartition(topic, 0)
    try:
        poll_until(consumer, 1)
        cycles: list[float] = []
        for n in range(20):
            started = time.monotonic()
            transactional.begin_transaction()
            transactional.send([(out, b"k", b"v", None)])
            transactional.send_offsets_to_transaction(
                {tp: Committed(n, "")}, consumer.group_metadata(), 10
            )
            transactional.flush(10)
            transactional.commit_transaction(10)
            cycles.append(time.monotonic() - started)
        typical = statistics.median(cycles[5:])
        assert typical < 0.08, f"a transaction took {typical * 1000:.0f} ms (median)"
    finally:
        consumer.close()


def test_a_newer_producer_with_the_same_transactional_id_fences_the_older(
    driver: Driver, settings: CommonSettings, topic: str
) -> None:
    config = ProducerConfig(transactional_id=unique_name("contract-twin"))
    older = driver.producer(settings, "contract", config)
    try:
        older.begin_transaction()
        older.send([(topic, b"k", b"v", None)])
        older.flush(10)
        newer = driver.producer(settings, "contract", config)
        try:
            with pytest.raises(FencedError):
                older.commit_transaction(10)
        finally:
            newer.discard()
    finally:
        older.discard()


def test_a_record_the_broker_refuses_is_a_counted_delivery_failure(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str
) -> None:
    producer = driver.producer(settings, "contract", ProducerConfig(max_request_bytes=4_000_000))
    try:
        sent = producer.send([(topic, b"k", b"small", None), (topic, b"k", b"x" * 3_000_000, None)])
        assert sent == 2
        producer.flush(30)
        answered = producer.deliveries()
        assert (answered.acknowledged, answered.failed) == (1, 1)
        assert isinstance(answered.first_failure, ClientError)
        assert producer.deliveries() == (0, 0, None)  # told once
    finally:
        producer.close(5)


class ListenerFailedError(Exception):
    pass


def test_what_a_rebalance_callback_raises_comes_out_of_poll_as_it_is(
    driver: Driver, settings: CommonSettings, topic: str
) -> None:
    consumer = group_member(driver, settings, unique_name("g"))

    def refuse(_assigned: set[TopicPartition]) -> None:
        raise ListenerFailedError("refused")

    consumer.subscribe(topic, lambda _revoked: None, refuse)
    try:
        with pytest.raises(ListenerFailedError, match="refused"):
            wait_until(lambda: consumer.poll(200) is None, 30, "the callback's error")
    finally:
        consumer.close()


def test_a_reader_reads_a_range_of_committed_records(
    driver: Driver, settings: CommonSettings, bootstrap: str, topic: str
) -> None:
    produce(bootstrap, topic, [(b"same-key", f"v{n}".encode()) for n in range(10)])
    reader = PartitionReader(driver.reader(settings, "contract-reader"))
    try:
        for tp in (TopicPartition(topic, 0), TopicPartition(topic, 1)):
            got = [r.value for r in reader.read(tp, 2, 6, timeout=30)]
            if got:
                assert got == [f"v{n}".encode() for n in range(2, 6)]
                break
        else:
            pytest.fail("no partition held the records")
    finally:
        reader.close()


def test_the_admin_counts_the_brokers(driver: Driver, settings: CommonSettings) -> None:
    """The detector gives a cluster a longer transaction timeout (DetectorSettings.for_cluster);
    the test broker is one. tests/cluster/test_failover.py sees three."""
    with driver.admin(settings, "contract-admin", 10_000) as admin:
        assert admin.describe_cluster() == 1
