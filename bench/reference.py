"""The reference rows: the detector's amount routing written with other tools, to compare with.

  quix       a small Quix Streams app: bytes in and bytes out, one callable picking the topic
             from the JSON amount (StreamingDataFrame.to_topic), Quix's own processing
             guarantee ("at-least-once" or "exactly-once") and its defaults otherwise
  confluent  a plain confluent-kafka consume-classify-produce loop: at_least_once flushes the
             producer, then commits the consumed offsets; exactly_once is a transactional
             producer that sends the offsets with send_offsets_to_transaction and commits

Both read the input from the beginning in a fresh group, send each record's key and value bytes
unchanged to the fraud topic when its JSON amount (json.loads) is greater than the threshold and
to the legit topic otherwise, and commit every --commit-interval-ms (the bench passes the
detector's COMMIT_INTERVAL_MS, so that all of them are timed alike by their committed offsets).

The packages come from bench/requirements.txt, installed by `make bench` into a venv of its own
(REFERENCE_VENV): quixstreams caps pydantic below the services' pins, so it cannot share .venv.
This module therefore imports only the standard library at the top (the bench in .venv imports
it for its constants) and quixstreams / confluent_kafka inside the functions that need them.

`.venv/bench-reference/bin/python -m bench.reference quix|confluent --bootstrap HOST:PORT ...`
`.venv/bench-reference/bin/python -m bench.reference versions`: the packages' versions as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.stopping import stop_flag

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_VENV = REPO_ROOT / ".venv" / "bench-reference"
GUARANTEES = ("at_least_once", "exactly_once")
KINDS = ("quix", "confluent")
# The guarantee's name in Quix Streams (Application(processing_guarantee=...)).
QUIX_GUARANTEES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}


def reference_python() -> Path:
    """The reference venv's interpreter (BENCH_REFERENCE_PYTHON overrides it); may not exist."""
    override = os.environ.get("BENCH_REFERENCE_PYTHON")
    return Path(override) if override else REFERENCE_VENV / "bin" / "python"


def _quix(args: argparse.Namespace) -> int:
    # Not installed in .venv, where mypy runs (see the module docstring): Any there.
    from quixstreams import Application  # type: ignore[import-not-found]  # noqa: PLC0415

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=QUIX_GUARANTEES[args.guarantee],
        # Quix's default is 5 s. The bench times every consumer by its committed offsets, so
        # all of them commit as often as the detector does.
        commit_interval=args.commit_interval_ms / 1000,
        state_dir=args.state_dir,  # Quix's default is ./state, which would be the repo root
        use_changelog_topics=False,  # stateless: nothing to keep in a changelog
        loglevel="INFO",
    )

    def topic(name: str) -> Any:
        return app.topic(
            name,
            key_deserializer="bytes",
            value_deserializer="bytes",
            key_serializer="bytes",
            value_serializer="bytes",
        )

    legit, fraud = topic(args.legit), topic(args.fraud)
    threshold, loads = args.threshold, json.loads

    def route(value: bytes, _key: Any, _timestamp: int, _headers: Any) -> Any:
        return fraud if loads(value)["amount"] > threshold else legit

    app.dataframe(topic(args.topic)).to_topic(route)
    app.run()  # until SIGTERM: Quix then commits what it processed and closes
    return 0


class _ConfluentLoop:
    """Consume a batch, classify and produce each record, commit every `interval` seconds."""

    def __init__(self, args: argparse.Namespace) -> None:
        import confluent_kafka  # noqa: PLC0415  (this row's own client)

        self.kafka_exception = confluent_kafka.KafkaException
        self.exactly_once = args.guarantee == "exactly_once"
        self.failed: list[Any] = []
        self.closing = False
        self.consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": args.bootstrap,
                "group.id": args.group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        config: dict[str, Any] = {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": True,
        }
        if self.exactly_once:
            config["transactional.id"] = f"{args.group}-{uuid.uuid4().hex[:12]}"
        self.producer = confluent_kafka.Producer(config)

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed.append(error)

    def commit(self, final: bool = False) -> None:
        """Everything sent so far with the offsets after it; then a new transaction in EOS."""
        consumer, producer = self.consumer, self.producer
        offsets = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        if self.exactly_once:
            if offsets:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()
            if not final:
                producer.begin_transaction()
            return
        producer.flush()
        if self.failed:
            raise self.kafka_exception(self.failed[0])
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)

    def _revoked(self, _consumer: Any, _partitions: Any) -> None:
        if not self.closing:  # a partition taken away commits what was read of it first
            self.commit()

    def run(self, args: argparse.Namespace, stop: threading.Event) -> None:
        consumer, producer = self.consumer, self.producer
        if self.exactly_once:
            producer.init_transactions()
            producer.begin_transaction()
        consumer.subscribe([args.topic], on_revoke=self._revoked)
        interval, last_commit, consumed = args.commit_interval_ms / 1000, time.monotonic(), False
        threshold, loads, produce = args.threshold, json.loads, producer.produce
        legit, fraud, batch = args.legit, args.fraud, args.max_poll_records
        try:
            while not stop.is_set():
                messages = consumer.consume(num_messages=batch, timeout=0.1)
                for message in messages:
                    if message.error():
                        raise self.kafka_exception(message.error())
                    value = message.value()
                    topic = fraud if loads(value)["amount"] > threshold else legit
                    while True:
                        try:
                            produce(topic, value, message.key())
                            break
                        except BufferError:  # the local queue is full: let it drain
                            producer.poll(0.05)
                consumed = consumed or bool(messages)
                producer.poll(0)
                if consumed and time.monotonic() - last_commit >= interval:
                    self.commit()
                    last_commit, consumed = time.monotonic(), False
            self.commit(final=True)
        finally:
            self.closing = True
            consumer.close()


def _confluent(args: argparse.Namespace) -> int:
    stop = stop_flag()
    _ConfluentLoop(args).run(args, stop)
    return 0


def _versions(_args: argparse.Namespace) -> int:
    from importlib import import_module  # noqa: PLC0415
    from importlib.metadata import version  # noqa: PLC0415

    librdkafka = import_module("confluent_kafka").libversion()[0]
    print(
        json.dumps(
            {
                "quixstreams": version("quixstreams"),
                "confluent_kafka": version("confluent-kafka"),
                "librdkafka": librdkafka,
                "python": sys.version.split()[0],
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("kind", choices=[*KINDS, "versions"])
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--group")
    parser.add_argument("--legit")
    parser.add_argument("--fraud")
    parser.add_argument("--guarantee", choices=GUARANTEES, default="at_least_once")
    parser.add_argument("--threshold", type=float, default=900.0)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--max-poll-records", type=int, default=2000)
    parser.add_argument("--state-dir", default=None, help="Quix's state directory")
    args = parser.parse_args(argv)
    if args.kind != "versions":
        needed = ("bootstrap", "topic", "group", "legit", "fraud")
        if missing := [f"--{name}" for name in needed if getattr(args, name) is None]:
            parser.error(f"{args.kind} needs {', '.join(missing)}")
    return {"quix": _quix, "confluent": _confluent, "versions": _versions}[args.kind](args)


if __name__ == "__main__":
    sys.exit(main())
