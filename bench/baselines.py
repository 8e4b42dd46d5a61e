"""What the services are compared with, each run as a process of its own:

  produce  a raw producer: the generator's own producer (make_producer) sending records encoded
           up front, so only the generator's per-record work (make, encode, pace) is left out
  pipe     a raw consume-and-produce loop with the detector's own consumer and producer
           (make_consumer, make_producer in at_least_once): bytes in, bytes out unchanged, one
           json.loads of each value, no rule; offsets committed after a flush every
           COMMIT_INTERVAL_MS as at_least_once does
  naive    the tutorial's detector: iterate the consumer with a json.loads deserializer, send each
           record with a json.dumps serializer; kafka-python's defaults otherwise

`produce` and `pipe` run on the client KAFKA_CLIENT chooses, as the services do: the adapter's
client is taken out of the port (`.client`) and driven with its own library's calls, so what is
left is that library's per-record cost. Kafka's own ProducerPerformance and ConsumerPerformance
give the broker's and the Java client's limit.

`python -m bench.baselines produce|pipe|naive --bootstrap HOST:PORT ...`
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import confluent_kafka
from kafka.structs import OffsetAndMetadata

from bench.broker import run_tool
from bench.kafka_ops import encoded_transactions
from bench.stopping import stop_flag
from detector.clients import make_consumer as detector_consumer
from detector.clients import make_producer as detector_producer
from detector.config import DetectorSettings
from fraudcore.kafka.confluent import clients as confluent
from fraudcore.kafka.kafka_python import clients as kafka_python
from fraudcore.kafka.ports import Consumer, Producer
from fraudcore.runtime import freeze_startup_heap
from generator.app import make_producer as generator_producer
from generator.config import GeneratorSettings
from kafka import KafkaConsumer, KafkaProducer


def _produce(args: argparse.Namespace) -> int:
    records = encoded_transactions(args.count, args.seed)
    settings = GeneratorSettings(kafka_broker_url=args.bootstrap, transactions_topic=args.topic)
    made = generator_producer(settings)  # the generator's client, raw sends
    made.prepare(args.topic)
    freeze_startup_heap()  # as the generator does before its loop
    started = time.monotonic()
    try:
        if isinstance(made, kafka_python.Producer):
            _send_kafka_python(made.client, args.topic, records)
        elif isinstance(made, confluent.Producer):
            _send_confluent(made.client, args.topic, records)
        else:
            raise TypeError(f"no raw producer for {type(made).__name__}")
        seconds = time.monotonic() - started
    finally:
        made.close(10)
    print(json.dumps({"count": len(records), "seconds": seconds, "rate": len(records) / seconds}))
    return 0


def _send_kafka_python(
    producer: KafkaProducer, topic: str, records: list[tuple[bytes, bytes]]
) -> None:
    send = producer.send
    for key, value in records:
        send(topic, key=key, value=value)
    producer.flush()


def _send_confluent(
    producer: confluent_kafka.Producer, topic: str, records: list[tuple[bytes, bytes]]
) -> None:
    for key, value in records:
        _produce_one(producer, topic, key, value, None)
    if left := producer.flush(60):
        raise RuntimeError(f"{left} record(s) unsent after 60 s")


def _produce_one(
    producer: confluent_kafka.Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Any,
) -> None:
    """librdkafka refuses a record while its queue is full: serve it, then try again."""
    while True:
        try:
            producer.produce(topic, value, key, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def _pipe(args: argparse.Namespace) -> int:
    settings = DetectorSettings(
        kafka_broker_url=args.bootstrap,
        transactions_topic=args.topic,
        consumer_group=args.group,
        processing_guarantee="at_least_once",
    )
    # The detector's own clients (KAFKA_CLIENT's), without the detector's loop around them.
    consumer, producer = detector_consumer(settings), detector_producer(settings)
    interval = settings.commit_interval_ms / 1000  # the detector's COMMIT_INTERVAL_MS
    stop = stop_flag()
    try:
        if isinstance(consumer, kafka_python.Consumer) and isinstance(
            producer, kafka_python.Producer
        ):
            _pipe_kafka_python(consumer.client, producer.client, args, interval, stop)
        elif isinstance(consumer, confluent.Consumer) and isinstance(producer, confluent.Producer):
            batch = consumer.max_poll_records  # the detector's MAX_POLL_RECORDS
            _pipe_confluent(consumer.client, producer.client, args, (interval, batch), stop)
        else:
            raise TypeError(f"no raw pipe for {type(consumer).__name__}")
    finally:
        _close(consumer, producer)
    return 0


def _close(consumer: Consumer, producer: Producer) -> None:
    try:
        producer.close(10)
    finally:
        consumer.close()


def _pipe_kafka_python(
    consumer: KafkaConsumer,
    producer: KafkaProducer,
    args: argparse.Namespace,
    interval: float,
    stop: threading.Event,
) -> None:
    consumer.subscribe([args.topic])
    freeze_startup_heap()  # as the detector does before its loop
    pending: dict[Any, Any] = {}
    last_commit = time.monotonic()
    send, loads, output = producer.send, json.loads, args.output
    while not stop.is_set():
        for tp, records in consumer.poll(timeout_ms=100).items():
            for record in records:
                loads(record.value)  # the one parse every row does
                send(output, value=record.value, key=record.key, headers=record.headers)
            pending[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if pending and time.monotonic() - last_commit >= interval:
            producer.flush()
            consumer.commit(pending)
            pending = {}
            last_commit = time.monotonic()
    producer.flush()
    if pending:
        consumer.commit(pending)


def _pipe_confluent(
    consumer: confluent_kafka.Consumer,
    producer: confluent_kafka.Producer,
    args: argparse.Namespace,
    pace: tuple[float, int],
    stop: threading.Event,
) -> None:
    """`pace`: the commit interval in seconds and the records per consume() call."""
    consumer.subscribe([args.topic])
    freeze_startup_heap()  # as the detector does before its loop
    pending: dict[tuple[str, int], int] = {}
    last_commit = time.monotonic()
    produce, loads, output = producer.produce, json.loads, args.output
    interval, batch = pace

    def commit() -> None:
        if left := producer.flush(60):
            raise RuntimeError(f"{left} record(s) unsent after 60 s")
        offsets = [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in pending.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
        pending.clear()

    while not stop.is_set():
        for message in consumer.consume(batch, 0.1):
            if error := message.error():
                raise confluent_kafka.KafkaException(error)
            value = message.value()
            loads(value)  # the one parse every row does
            key, headers = message.key(), message.headers()
            try:
                produce(output, value, key, headers=headers)
            except BufferError:
                _produce_one(producer, output, key, value, headers)
            pending[message.topic(), message.partition()] = message.offset() + 1
        producer.poll(0)  # delivery reports (only failures, as the detector's producer is set)
        if pending and time.monotonic() - last_commit >= interval:
            commit()
            last_commit = time.monotonic()
    if pending:
        commit()
    producer.flush(60)


def _naive(args: argparse.Namespace) -> int:
    # The tutorial's detector, nearly line for line (its topics and a group so it can be timed).
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        value_deserializer=json.loads,
    )
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        value_serializer=lambda value: json.dumps(value).encode(),
    )
    for message in consumer:
        transaction: dict[str, Any] = message.value
        topic = args.fraud if transaction["amount"] > 900 else args.legit
        producer.send(topic, value=transaction)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("kind", choices=["produce", "pipe", "naive"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--group", default="bench-baseline")
    parser.add_argument("--output", default="bench-pipe-out")
    parser.add_argument("--legit", default="bench-naive-legit")
    parser.add_argument("--fraud", default="bench-naive-fraud")
    args = parser.parse_args(argv)
    return {"produce": _produce, "pipe": _pipe, "naive": _naive}[args.kind](args)


# --------------------------------------------------------------------------- Kafka's own tools


def producer_performance(
    bootstrap: str, topic: str, count: int, payload_file: Path
) -> dict[str, Any]:
    """ProducerPerformance with the generator's producer settings and the same payloads."""
    out = run_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic", topic,
        "--num-records", str(count),
        "--throughput", "-1",
        "--payload-file", str(payload_file),
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "batch.size=65536",
    )  # fmt: skip
    # "2000000 records sent, 412371.1 records/sec (62.31 MB/sec), 3.2 ms avg latency, ..."
    matches = list(re.finditer(r"(\d+) records sent, ([\d.]+) records/sec", out))
    if not matches:
        raise RuntimeError(f"unexpected ProducerPerformance output:\n{out}")
    last = matches[-1]  # the summary line comes after the progress lines
    return {"records": int(last.group(1)), "rate": float(last.group(2)), "output": out.strip()}


def consumer_performance(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """ConsumerPerformance from the beginning of `topic`; the fetch rate excludes the group join."""
    out = run_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--messages", str(count),
        "--timeout", "60000",
    )  # fmt: skip
    lines = [line for line in out.splitlines() if line.strip()]
    header = next((i for i, line in enumerate(lines) if "nMsg.sec" in line), None)
    if header is None or header + 1 >= len(lines):
        raise RuntimeError(f"unexpected ConsumerPerformance output:\n{out}")
    names = [name.strip() for name in lines[header].split(",")]
    values = dict(zip(names, (v.strip() for v in lines[header + 1].split(",")), strict=False))
    return {
        "records": int(values["data.consumed.in.nMsg"]),
        "rate": float(values["fetch.nMsg.sec"]),
        "rate_with_join": float(values["nMsg.sec"]),
        "output": out.strip(),
    }


if __name__ == "__main__":
    sys.exit(main())
