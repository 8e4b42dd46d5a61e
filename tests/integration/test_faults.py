"""Kill tests: faults mid-stream, then a read_committed audit of every input record.

Modelled on Kafka's transactions system test: unique input records are preloaded (or generated),
the detector is SIGKILLed, rebalanced or cut off from the broker while it works, and at the end
`python -m detector.audit --json` checks that each input record is in exactly one output topic,
the one the rule picks. Each test prints its audit, so `pytest -rA` shows the numbers.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import TransactionFactory
from kafka import KafkaAdminClient, KafkaConsumer
from tests.broker import Broker
from tests.kafka_helpers import (
    Service,
    Topics,
    consume,
    create_topic,
    produce,
    run_command,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 20_000
# What a Feeder adds to the input while kill_mid_stream kills: a chunk, then a pause.
FEED_CHUNK = 1_000
FEED_PAUSE = 0.2
KILLS = 3
# Where each kill falls, as a share of the input still to process when the detector starts.
KILL_FROM, KILL_TO = 0.05, 0.4
# A SIGKILLed detector stays a group member until its session times out; the broker's minimum
# keeps each restart short. Smaller polls make progress, and so each kill, finer grained.
FAST_GROUP = {"SESSION_TIMEOUT_MS": "6000", "MAX_POLL_RECORDS": "500"}
GUARANTEES = ["exactly_once", "at_least_once"]


def produce_unique(bootstrap: str, topic: str, count: int, seed: int) -> None:
    """`count` unique transactions (each has its own id), keyed by source account."""
    factory = TransactionFactory(seed=seed)
    txs = (factory.next() for _ in range(count))
    assert produce(bootstrap, topic, ((encode_key(tx), encode(tx)) for tx in txs)) == count


def committed(admin: KafkaAdminClient, topics: Topics) -> dict[int, int]:
    """The group's committed input offset per partition (read_committed: stable offsets)."""
    try:
        offsets = admin.list_group_offsets(topics.group).get(topics.group, {})
    except KafkaError:  # e.g. no group coordinator yet on a fresh broker: nothing committed
        return {}
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topics.input}


def committed_total(admin: KafkaAdminClient, topics: Topics) -> int:
    return sum(committed(admin, topics).values())


def audit(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run the audit CLI as a user would; its exit status and JSON report."""
    done = run_command(
        [sys.executable, "-m", "detector.audit", "--json", "--timeout", "90"],
        {**os.environ, **env},
        timeout=150,
    )
    assert done.returncode in (0, 1), f"audit failed ({done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout)


def settled_audit(env: dict[str, str], timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """Audit until nothing is lost, or only `lost` keeps failing when time is up.

    Outputs become visible to read_committed readers when their transaction ends; the open
    transaction of a killed detector whose TRANSACTIONAL_ID is not reused ends only when the
    broker aborts it (TRANSACTION_TIMEOUT_MS, checked every 10 s). Committed records never go
    away, so duplicates, misrouted and unexpected records are final at once.
    """
    started = time.monotonic()
    for attempt in itertools.count(1):
        status, report = audit(env)
        final = report["duplicated"] or report["misrouted"] or report["unexpected"]
        if report["lost"] == 0 or final or time.monotonic() > started + timeout:
            waited = time.monotonic() - started
            print(f"audit {attempt} after {waited:.1f}s:", json.dumps(report["counts"]))
            print("audit:", json.dumps({k: v for k, v in report.items() if k != "examples"}))
            if not report["ok"]:
                print("examples:", json.dumps(report["examples"]))
            return status, report
        time.sleep(1.0)
    raise AssertionError("unreachable")


def uncommitted_output_count(bootstrap: str, topics: Topics) -> int:
    """Output records including those of aborted transactions (read_uncommitted)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    try:
        names = [topics.legit, topics.fraud, topics.invalid]
        tps = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t)]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        count = 0
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read the outputs to their end"
            for batch in consumer.poll(timeout_ms=200).values():
                count += len(batch)
        return count
    finally:
        consumer.close()


def assigned(service: Service) -> set[int]:
    """The input partitions a detector last logged as assigned to it: the whole assignment,
    before the parenthesis that names what the rebalance changed."""
    lines = [line for line in service.output().splitlines() if "assigned partitions:" in line]
    if not lines:
        return set()
    whole = lines[-1].split("assigned partitions:", 1)[1].split(" (", 1)[0]
    return {int(p) for p in re.findall(r"-(\d+)'", whole)}


def assert_exactly_once(report: dict[str, Any], total: int) -> None:
    assert report["counts"]["input"] == total
    assert (report["lost"], report["duplicated"]) == (0, 0), report["examples"]
    assert (report["misrouted"], report["unexpected"]) == (0, 0), report["examples"]
    outputs = report["counts"]
    assert outputs["legit"] + outputs["fraud"] + outputs["dead_letter"] == total
    assert {k: outputs[k] for k in report["expected"]} == report["expected"]
    assert report["ok"]


class OutputEnds:
    """Whether an output partition holds records of a transaction still open: its end offset
    (high watermark) is past its last stable offset, the end read_committed readers see."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self._names = [topics.legit, topics.fraud, topics.invalid]
        self._all = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._stable = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )

    def open_transaction(self) -> bool:
        tps = [
            TopicPartition(name, p)
            for name in self._names
            for p in self._all.partitions_for_topic(name)
        ]
        ends, stable = self._all.end_offsets(tps), self._stable.end_offsets(tps)
        return any(ends[tp] > stable[tp] for tp in tps)

    def close(self) -> None:
        self._all.close()
        self._stable.close()


class Feeder:
    """Keeps the input growing in the background, chunk after chunk, until stopped.

    A kill test must kill a detector that is working. A fixed amount of input does not ensure
    that: a fast client processes tens of thousands of records between two looks at its
    progress. With a feeder the stream never ends while the kills go on, and each restart
    meets the backlog that built up while the killed member's session timed out.
    """

    def __init__(self, produce_chunk: Callable[[int], int], pause: float = FEED_PAUSE) -> None:
        self._produce_chunk = produce_chunk
        self._pause = pause
        self._stop = threading.Event()
        self._fed = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    @property
    def fed(self) -> int:
        """Records acknowledged so far."""
        return self._fed

    def _run(self) -> None:
        try:
            for chunk in itertools.count():
                if self._stop.is_set():
                    return
                self._fed += self._produce_chunk(chunk)
                self._stop.wait(self._pause)
        except BaseException as exc:  # reported by stop(), in the test's thread
            self._error = exc

    def stop(self) -> int:
        """Stop after the chunk in flight; the number of records fed."""
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the feeder did not stop"
        if self._error is not None:
            raise AssertionError(f"the feeder failed: {self._error!r}") from self._error
        return self._fed


def kill_mid_stream(
    admin: KafkaAdminClient,
    topics: Topics,
    env: dict[str, str],
    tmp_path: Path,
    *,
    seed: int,
    transactional: bool,
    preloaded: int,
    feed: Callable[[int], int],
) -> tuple[list[Service], int]:
    """Start a detector, let it commit part of its backlog, SIGKILL it; KILLS times, while
    `feed(chunk)` keeps adding input (a Feeder). Returns the detectors and the input's size.

    Each kill falls at a random point of what was left to process when the detector started,
    judged by committed progress. With transactions it also waits for the outputs of an open
    transaction in the log, so that the kill has something to abort.
    """
    rng = random.Random(seed)
    killed: list[Service] = []
    ends = OutputEnds(env["KAFKA_BROKER_URL"], topics)
    feeder = Feeder(feed)
    try:
        last = committed_total(admin, topics)
        for kill in range(1, KILLS + 1):
            detector = Service.module("detector", env, tmp_path)
            killed.append(detector)
            backlog = preloaded + feeder.fed - last
            mark = last + 1 + int(backlog * rng.uniform(KILL_FROM, KILL_TO))

            def progressed(mark: int = mark, detector: Service = detector) -> bool:
                assert detector.running(), detector.output()
                return committed_total(admin, topics) >= mark

            wait_until(progressed, 90, f"committed output past {mark} before kill {kill}", 0.005)
            if transactional:
                wait_until(ends.open_transaction, 30, "an open transaction", interval=0.005)
            assert detector.running(), detector.output()
            detector.kill()
            last = committed_total(admin, topics)
            print(f"kill {kill}: SIGKILL with {last} of {preloaded + feeder.fed} committed")
    except BaseException:
        for service in killed:
            service.kill()
        raise
    finally:
        total = preloaded + feeder.stop()
        ends.close()
    return killed, total


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_sigkill_mid_stream_then_restart(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient, guarantee: str
) -> None:
    """(a) exactly_once: three SIGKILLs mid-stream, same TRANSACTIONAL_ID, nothing lost or doubled.
    (d) at_least_once under the same kills: nothing lost; duplicates are allowed and reported."""
    create_topic(bootstrap, topics.input, partitions=3)
    produce_unique(bootstrap, topics.input, TOTAL, seed=21)
    env = {
        **topics.env(bootstrap),
        **FAST_GROUP,
        "PROCESSING_GUARANTEE": guarantee,
        "TRANSACTIONAL_ID": f"fault-{topics.group}-0",
    }
    started = time.monotonic()

    def feed(chunk: int) -> int:
        produce_unique(bootstrap, topics.input, FEED_CHUNK, seed=1000 + chunk)
        return FEED_CHUNK

    services, total = kill_mid_stream(
        admin,
        topics,
        env,
        tmp_path,
        seed=GUARANTEES.index(guarantee),
        transactional=guarantee == "exactly_once",
        preloaded=TOTAL,
        feed=feed,
    )
    try:
        final = Service.module("detector", env, tmp_path)
        services.append(final)

        def all_committed() -> bool:
            assert final.running(), final.output()
            return committed_total(admin, topics) == total

        wait_until(all_committed, 120, "every input record committed", interval=0.2)
        status, report = settled_audit(env)
        assert final.running(), final.output()
        assert final.stop() == 0, final.output()
    finally:
        for service in services:
            service.kill()
    print(f"{guarantee}: {KILLS} kills, stream done in {time.monotonic() - started:.1f}s")
    assert report["counts"]["input"] == total
    assert report["lost"] == 0, report["examples"]
    assert (report["misrouted"], report["unexpected"]) == (0, 0), report["examples"]
    if guarantee == "exactly_once":
        assert_exactly_once(report, total)
        assert status == 0
        # The kills did interrupt transactions: their outputs are in the log, aborted.
        written = uncommitted_output_count(bootstrap, topics)
        print(f"output records written {written}, of which aborted {written - total}")
        assert written > total
    else:
        print(f"at_least_once: {report['duplicated']} duplicates after {KILLS} SIGKILLs")
        assert status == (1 if report["duplicated"] else 0)


def test_sigkill_one_of_two_detectors_and_start_a_third(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient
) -> None:
    """(b) Two detectors share a 6-partition input; one is SIGKILLed mid-stream and a third one
    joins. Its partitions move on, its open transaction is aborted by the broker: exactly once."""
    partitions = 6
    create_topic(bootstrap, topics.input, partitions)
    env = {
        **topics.env(bootstrap),
        **FAST_GROUP,
        "TRANSACTIONS_TOPIC_PARTITIONS": str(partitions),
        "TRANSACTION_TIMEOUT_MS": "5000",
    }
    services: list[Service] = []

    def start(instance: int) -> Service:
        service = Service.module(
            "detector", {**env, "TRANSACTIONAL_ID": f"fault-{topics.group}-{instance}"}, tmp_path
        )
        services.append(service)
        return service

    try:
        first, second = start(0), start(1)

        def split_between_both() -> bool:
            mine, theirs = assigned(first), assigned(second)
            return (
                bool(mine)
                and bool(theirs)
                and mine.isdisjoint(theirs)
                and (mine | theirs == set(range(partitions)))
            )

        wait_until(split_between_both, 60, "the two detectors to share the partitions")
        # Unique input, produced while both work, so that the kill falls mid-stream.
        with ThreadPoolExecutor(max_workers=1) as pool:
            producing = pool.submit(produce_unique, bootstrap, topics.input, TOTAL, 22)

            def both_progressed() -> bool:
                now = committed(admin, topics)
                return sum(now.values()) > 2000 and all(now.get(p) for p in range(partitions))

            wait_until(both_progressed, 60, "both detectors to commit", interval=0.05)
            first.kill()
            at_kill = committed_total(admin, topics)
            producing.result(timeout=120)
        print(f"split {sorted(assigned(first))} / {sorted(assigned(second))}")
        print(f"SIGKILL of detector 0 with {at_kill} of {TOTAL} input records committed")
        assert at_kill < TOTAL, "the stream ended before the kill; preload more records"
        third = start(2)

        def all_committed() -> bool:
            assert second.running(), second.output()
            assert third.running(), third.output()
            return committed_total(admin, topics) == TOTAL

        wait_until(all_committed, 120, "every input record committed", interval=0.2)
        status, report = settled_audit(env)
        assert second.running(), second.output()
        assert third.running(), third.output()
        assert second.stop() == 0, second.output()
        assert third.stop() == 0, third.output()
    finally:
        for service in services:
            service.kill()
    assert_exactly_once(report, TOTAL)
    assert status == 0


def test_broker_outage_while_generating_and_detecting(
    broker: Broker, bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """(c) The broker stops for a few seconds mid-stream and comes back: the generator buffers
    and delivers each transaction once, and the detector recovers by itself from the transaction
    the broker aborted on timeout, exactly once.

    That transaction is made certain: the detector is frozen (SIGSTOP) while a transaction of
    its holds outputs, and stays frozen through the outage until the test has seen the broker,
    back, abort that transaction on timeout; nothing else could have ended it. Resumed, the
    detector must notice and replace its producer. (A detector running through an outage is
    test_health.py's test_health_flips_when_the_broker_goes_away_and_comes_back.)
    """
    if not broker.restartable:
        pytest.skip(f"a {broker.kind} broker cannot be stopped and started again by the test")
    count = 15_000
    env = {**topics.env(bootstrap), "TRANSACTIONS_COUNT": str(count), "RANDOM_SEED": "23"}
    env["TRANSACTIONS_PER_SECOND"] = "1000"
    # Transactions time out well within the outage, so the broker aborts the open one once back.
    # One record per poll: every poll that returns one is full, so the detector does not commit
    # as soon as it has caught up but keeps each transaction open for COMMIT_INTERVAL_MS.
    env |= {"COMMIT_INTERVAL_MS": "1000", "TRANSACTION_TIMEOUT_MS": "5000"}
    env["MAX_POLL_RECORDS"] = "1"
    outputs = [topics.legit, topics.fraud, topics.invalid]

    def open_output_records() -> int:
        """Output records of open transactions: those past the last stable offset, which is
        where a read_committed reader's end is, while a read_uncommitted reader's is the end.
        Exact while the detector is frozen; otherwise it may count records of a commit too."""
        ends = []
        for isolation in ("read_committed", "read_uncommitted"):
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
            try:
                tps = [
                    TopicPartition(t, p) for t in outputs for p in consumer.partitions_for_topic(t)
                ]
                ends.append(consumer.end_offsets(tps))
            finally:
                consumer.close()
        return sum(end - ends[0][tp] for tp, end in ends[1].items())

    services: list[Service] = []
    broker_down = False
    frozen = False
    try:
        generator = Service.module("generator", env, tmp_path)
        services.append(generator)
        detector = Service.module("detector", env, tmp_path)
        services.append(detector)

        before = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:

            def detecting() -> bool:
                return committed_total(before, topics) > 2000

            wait_until(detecting, 60, "the detector to commit 2000 records", interval=0.1)
        finally:
            before.close()

        def frozen_in_a_transaction() -> bool:
            """Freeze the detector; keep it frozen if a transaction of its holds outputs. A
            commit already sent completes in the broker within the second waited here. If none
            is open, it runs again for the wait's interval before the next try."""
            nonlocal frozen
            detector.pause()
            frozen = True
            time.sleep(1.0)
            if open_output_records() > 0:
                return True
            detector.resume()
            frozen = False
            return False

        wait_until(frozen_in_a_transaction, 60, "the detector frozen in a transaction", 0.5)
        held = open_output_records()
        broker_down = True
        stopped_at = time.monotonic()
        broker.stop()
        time.sleep(6)
        broker.start()
        broker_down = False
        print(f"broker outage: {time.monotonic() - stopped_at:.1f}s (stop, 6 s, start)")

        def aborted_by_the_broker() -> bool:
            try:
                return open_output_records() == 0
            except KafkaError:  # the broker is still loading its state
                return False

        wait_until(aborted_by_the_broker, 90, "the broker to abort the transaction", interval=0.5)
        print(f"the broker aborted the frozen detector's transaction ({held} outputs)")
        before_resume = len(detector.output())  # a frozen process writes nothing
        detector.resume()
        frozen = False

        assert generator.wait(timeout=150) == 0, generator.output()
        after_restart = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:

            def all_committed() -> bool:
                assert detector.running(), detector.output()
                return committed_total(after_restart, topics) == count

            wait_until(all_committed, 120, "every input record committed", interval=0.2)
        finally:
            after_restart.close()
        status, report = settled_audit(env)
        # Exactly the generated transactions in the input: none lost, none sent twice.
        inputs = consume(bootstrap, [topics.input], count, timeout=60, settle=1.0)
        factory = TransactionFactory(seed=23)
        assert sorted(json.loads(r.value)["id"] for r in inputs) == sorted(
            str(factory.next().id) for _ in range(count)
        )
        assert detector.running(), detector.output()
        assert detector.stop() == 0, detector.output()
        # Resumed, it noticed its transaction was gone and started afresh with a new producer.
        resumed = detector.output()[before_resume:]
        recoveries = resumed.count("transactional producer was replaced")
        print(f"detector producer replacements after it resumed: {recoveries}")
        assert recoveries >= 1, resumed[-5000:]
        # The aborted outputs are still in the log, marked aborted: only read_uncommitted sees them.
        assert uncommitted_output_count(bootstrap, topics) >= count + held
    finally:
        if frozen:
            detector.resume()
        if broker_down:
            broker.start()  # the broker is shared by the whole session
        for service in services:
            service.kill()
    assert_exactly_once(report, count)
    assert status == 0


class Restarter:
    """Keeps `count` detectors running: each one that exits is started again `delay` s later,
    as a container with `restart: always` would be. Keeps every exited one's output."""

    def __init__(self, count: int, env: dict[str, str], tmp_path: Path, delay: float) -> None:
        self._env, self._tmp_path, self._delay = env, tmp_path, delay
        self._stopping = False
        self.running = [Service.module("detector", env, tmp_path) for _ in range(count)]
        self.exited: list[Service] = []
        self._pool = ThreadPoolExecutor(max_workers=count)
        self._slots = [self._pool.submit(self._keep, slot) for slot in range(count)]

    def _keep(self, slot: int) -> None:
        while not self._stopping:
            if self.running[slot].running():
                time.sleep(0.05)
                continue
            self.running[slot].wait(10)
            self.exited.append(self.running[slot])
            time.sleep(self._delay)
            if not self._stopping:
                self.running[slot] = Service.module("detector", self._env, self._tmp_path)

    def stop(self) -> None:
        self._stopping = True
        for slot in self._slots:
            slot.result(timeout=30)
        self._pool.shutdown()
        for service in self.running:
            service.kill()

    def exits_on_fencing(self) -> int:
        return sum("stopping: fenced" in service.output() for service in self.exited)

    def tracebacks(self) -> list[str]:
        """The output of each detector that did not stop with its one line, but a traceback."""
        return [s.output()[-3000:] for s in self.exited if "Traceback" in s.output()]


def test_detectors_sharing_one_transactional_id_lose_nothing(
    bootstrap: str, topics: Topics, tmp_path: Path, admin: KafkaAdminClient
) -> None:
    """Several detectors configured with one TRANSACTIONAL_ID fence each other over and over
    while the generator runs; each is restarted when it exits. Then one detector with an id of
    its own drains the input, and the audit finds every input exactly once."""
    detectors = int(os.environ.get("SHARED_ID_DETECTORS", "5"))
    count = int(os.environ.get("SHARED_ID_TRANSACTIONS", "60000"))
    create_topic(bootstrap, topics.input, partitions=3)
    env = {**topics.env(bootstrap), **FAST_GROUP, "TRANSACTIONAL_ID": f"shared-{topics.group}"}
    generator_env = {
        **topics.env(bootstrap),
        "TRANSACTIONS_COUNT": str(count),
        "TRANSACTIONS_PER_SECOND": "1000",
        "RANDOM_SEED": "24",
    }
    restarter = Restarter(detectors, env, tmp_path, delay=0.5)
    services: list[Service] = []
    try:
        generator = Service.module("generator", generator_env, tmp_path)
        services.append(generator)
        assert generator.wait(timeout=count / 1000 + 90) == 0, generator.output()
        time.sleep(5)  # a few more rounds of fencing on the last records
    finally:
        restarter.stop()
    fenced = restarter.exits_on_fencing()
    print(
        f"{detectors} detectors sharing one TRANSACTIONAL_ID: {len(restarter.exited)} exits, "
        f"{fenced} of them on fencing"
    )
    drain_env = {**env, "TRANSACTIONAL_ID": f"drain-{topics.group}"}
    try:
        drain = Service.module("detector", drain_env, tmp_path)
        services.append(drain)

        def all_committed() -> bool:
            assert drain.running(), drain.output()
            return committed_total(admin, topics) == count

        wait_until(all_committed, 180, "every input record committed", interval=0.2)
        status, report = settled_audit(drain_env)
        assert drain.stop() == 0, drain.output()
    finally:
        for service in services:
            service.kill()
    assert fenced > 0, "the detectors never fenced each other: the test proves nothing"
    assert restarter.tracebacks() == [], "a fenced detector stops with one line"
    assert_exactly_once(report, count)
    assert status == 0
