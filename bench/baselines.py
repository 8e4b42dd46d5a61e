"""What the services are compared with, each run as a process of its own:

  produce  a raw producer: the generator's own producer (make_producer) sending records encoded
           up front, so only the generator's per-record work (make, encode, pace) is left out
  pipe     a raw consume-and-produce loop with the detector's own consumer and producer
           (make_consumer, make_producer in at_least_once): bytes in, bytes out, no parsing, no
           rule; offsets committed after a flush every COMMIT_INTERVAL_MS as at_least_once does
  naive    the tutorial's detector: iterate the consumer with a json.loads deserializer, send each
           record with a json.dumps serializer; kafka-python's defaults otherwise

and Kafka's own ProducerPerformance and ConsumerPerformance (the broker's and Java client's limit).

`python -m bench.baselines produce|pipe|naive --bootstrap HOST:PORT ...`
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from kafka.structs import OffsetAndMetadata

from bench.broker import run_tool
from bench.kafka_ops import encoded_transactions
from bench.stopping import stop_flag
from detector.clients import make_consumer as detector_consumer
from detector.clients import make_producer as detector_producer
from detector.config import DetectorSettings
from fraudcore.kafka.kafka_python import clients as kafka_python
from fraudcore.runtime import freeze_startup_heap
from generator.app import make_producer as generator_producer
from generator.config import GeneratorSettings
from kafka import KafkaConsumer, KafkaProducer


def raw_producer(made: object) -> KafkaProducer:
    """The kafka-python client inside one of our producers: this row measures the raw pipe."""
    assert isinstance(made, kafka_python.Producer), "the raw-pipe rows run on kafka-python"
    return made.client


def raw_consumer(made: object) -> KafkaConsumer:
    assert isinstance(made, kafka_python.Consumer), "the raw-pipe rows run on kafka-python"
    return made.client


def _produce(args: argparse.Namespace) -> int:
    records = encoded_transactions(args.count, args.seed)
    settings = GeneratorSettings(kafka_broker_url=args.bootstrap, transactions_topic=args.topic)
    producer = raw_producer(generator_producer(settings))  # the generator's client, raw sends
    try:
        producer.partitions_for(args.topic)
        freeze_startup_heap()  # as the generator does before its loop
        started = time.monotonic()
        send = producer.send
        for key, value in records:
            send(args.topic, key=key, value=value)
        producer.flush()
        seconds = time.monotonic() - started
    finally:
        producer.close(timeout=10)
    print(json.dumps({"count": len(records), "seconds": seconds, "rate": len(records) / seconds}))
    return 0


def _pipe(args: argparse.Namespace) -> int:
    settings = DetectorSettings(
        kafka_broker_url=args.bootstrap,
        transactions_topic=args.topic,
        consumer_group=args.group,
        processing_guarantee="at_least_once",
    )
    stop = stop_flag()
    # The detector's own clients, without the detector's loop around them.
    consumer = raw_consumer(detector_consumer(settings))
    producer = raw_producer(detector_producer(settings))
    consumer.subscribe([args.topic])
    freeze_startup_heap()  # as the detector does before its loop
    pending: dict[Any, Any] = {}
    commit_interval = settings.commit_interval_ms / 1000  # the detector's COMMIT_INTERVAL_MS
    last_commit = time.monotonic()
    send = producer.send
    output = args.output
    try:
        while not stop.is_set():
            for tp, records in consumer.poll(timeout_ms=100).items():
                for record in records:
                    send(output, value=record.value, key=record.key, headers=record.headers)
                pending[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            if pending and time.monotonic() - last_commit >= commit_interval:
                producer.flush()
                consumer.commit(pending)
                pending = {}
                last_commit = time.monotonic()
        producer.flush()
        if pending:
            consumer.commit(pending)
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
    return 0


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
