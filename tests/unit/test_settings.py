"""Settings: the tutorial's names and defaults, and one clear line for a bad value."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from detector.config import CLUSTER_TRANSACTION_TIMEOUT_MS, DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.core.rules import CountInWindow
from generator.config import GeneratorSettings
from tests.kafka_helpers import run_command


def test_defaults_are_the_tutorials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["TRANSACTIONS_TOPIC", "LEGIT_TOPIC", "FRAUD_TOPIC", "TRANSACTIONS_PER_SECOND"]:
        monkeypatch.delenv(name, raising=False)
    generator = load_settings(GeneratorSettings)
    detector = load_settings(DetectorSettings)
    assert generator.transactions_topic == "queueing.transactions"
    assert generator.transactions_per_second == 1000
    assert generator.transactions_count is None
    assert detector.legit_topic == "streaming.transactions.legit"
    assert detector.fraud_topic == "streaming.transactions.fraud"
    assert detector.dead_letter_topic == "streaming.transactions.invalid"
    assert detector.consumer_group == "detector"
    assert detector.fraud_amount_threshold == Decimal(900)
    assert detector.processing_guarantee == "exactly_once"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BROKER_URL", "broker:9092,other:19092")
    monkeypatch.setenv("TRANSACTIONS_PER_SECOND", "12.5")
    monkeypatch.setenv("TRANSACTIONS_COUNT", "40")
    monkeypatch.setenv("RANDOM_SEED", "3")
    settings = load_settings(GeneratorSettings)
    assert settings.bootstrap_servers == ["broker:9092", "other:19092"]
    assert (settings.transactions_per_second, settings.transactions_count) == (12.5, 40)
    assert settings.random_seed == 3


def test_empty_count_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACTIONS_COUNT", "")
    assert load_settings(GeneratorSettings).transactions_count is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRANSACTIONS_PER_SECOND", "fast"),
        ("TRANSACTIONS_PER_SECOND", "-5"),
        ("TRANSACTIONS_PER_SECOND", "0"),
        ("TRANSACTIONS_COUNT", "ten"),
        ("TRANSACTIONS_COUNT", "-1"),
        ("KAFKA_BROKER_URL", "localhost"),
        ("KAFKA_BROKER_URL", "localhost:99999"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_generator_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(GeneratorSettings)
    message = str(caught.value)
    assert name in message
    assert value in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRAUD_AMOUNT_THRESHOLD", "lots"),
        ("FRAUD_AMOUNT_THRESHOLD", "NaN"),
        ("FRAUD_AMOUNT_THRESHOLD", "-1"),
        ("PROCESSING_GUARANTEE", "maybe_once"),
        ("COMMIT_INTERVAL_MS", "0"),
        ("VELOCITY_MAX_TRANSACTIONS", "0"),
        ("VELOCITY_MAX_TRANSACTIONS", "2.5"),
        ("VELOCITY_WINDOW_SECONDS", "0"),
        ("VELOCITY_WINDOW_SECONDS", "-3"),
        ("VELOCITY_WINDOW_SECONDS", "inf"),
        ("VELOCITY_WINDOW_SECONDS", "soon"),
    ],
)
def test_bad_detector_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings(DetectorSettings)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("VELOCITY_MAX_TRANSACTIONS", "VELOCITY_WINDOW_SECONDS"),
        ("VELOCITY_WINDOW_SECONDS", "VELOCITY_MAX_TRANSACTIONS"),
    ],
)
def test_the_velocity_rule_needs_both_settings(given: str, missing: str) -> None:
    done = run_command([sys.executable, "-m", "detector"], {given: "3", "PATH": ""}, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{given} is set, {missing} is not" in lines[0]


def test_the_velocity_rule_is_off_without_its_settings_and_on_with_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("VELOCITY_MAX_TRANSACTIONS", "VELOCITY_WINDOW_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(DetectorSettings).rule_set.names == ("amount",)
    monkeypatch.setenv("VELOCITY_MAX_TRANSACTIONS", "3")
    monkeypatch.setenv("VELOCITY_WINDOW_SECONDS", "0.5")
    rules = load_settings(DetectorSettings).rule_set.rules
    assert [rule.name for rule in rules] == ["amount", "velocity"]
    assert isinstance(rules[1], CountInWindow)
    assert (rules[1].max_transactions, rules[1].window_seconds) == (3, 0.5)


@pytest.mark.parametrize("service", ["generator", "detector"])
def test_service_exits_non_zero_with_one_line(service: str) -> None:
    env = {"TRANSACTIONS_PER_SECOND": "fast", "FRAUD_AMOUNT_THRESHOLD": "lots", "PATH": ""}
    done = run_command([sys.executable, "-m", service], env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{service}: invalid setting")
    assert done.stdout == ""


# Prints the pid, the host name and the default transactional id of a detector process.
PRINT_DEFAULT_ID = (
    "import os, socket; from detector.config import DetectorSettings as S; "
    "print(os.getpid(), socket.gethostname(), S().effective_transactional_id)"
)


def test_the_default_transactional_id_is_unique_per_process_with_one_host_name_and_pid() -> None:
    """Two processes that share a host name and a pid (as container replicas on one host
    network do) get different default ids. Each runs in a new pid and UTS namespace."""
    shell = f'hostname replica && exec "$0" -c "{PRINT_DEFAULT_ID}"'
    seen = []
    for _ in range(2):
        done = run_command(
            [
                "unshare",
                "--pid",
                "--fork",
                "--uts",
                "--mount-proc",
                "sh",
                "-c",
                shell,
                sys.executable,
            ],
            {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": "."},
        )
        assert done.returncode == 0, done.stderr
        pid, host, transactional_id = done.stdout.split()
        seen.append((pid, host, transactional_id))
    (pid_a, host_a, id_a), (pid_b, host_b, id_b) = seen
    assert (pid_a, host_a) == (pid_b, host_b) == (pid_a, "replica")
    assert id_a != id_b
    assert id_a.startswith("detector-replica-")  # the group is the prefix the ACLs grant


def test_an_explicit_transactional_id_is_used_as_given() -> None:
    settings = DetectorSettings(transactional_id="detector-7")
    assert settings.effective_transactional_id == "detector-7"


def test_the_default_transactional_id_is_one_per_settings_object() -> None:
    """The producer that replaces a broken one keeps the id, so it fences its predecessor."""
    settings = DetectorSettings()
    assert settings.effective_transactional_id == settings.effective_transactional_id
    assert settings.effective_transactional_id != DetectorSettings().effective_transactional_id


def test_the_group_protocol_is_classic_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_GROUP_PROTOCOL", raising=False)
    assert load_settings(DetectorSettings).kafka_group_protocol == "classic"
    monkeypatch.setenv("KAFKA_CLIENT", "confluent")
    monkeypatch.setenv("KAFKA_GROUP_PROTOCOL", "Consumer")
    assert load_settings(DetectorSettings).kafka_group_protocol == "consumer"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KAFKA_GROUP_PROTOCOL": "kip848"}, "KAFKA_GROUP_PROTOCOL='kip848'"),
        (
            {"KAFKA_GROUP_PROTOCOL": "consumer", "KAFKA_CLIENT": "kafka-python"},
            "KAFKA_GROUP_PROTOCOL=consumer needs KAFKA_CLIENT=confluent",
        ),
        (
            {"KAFKA_GROUP_PROTOCOL": "consumer", "KAFKA_CLIENT": "confluent",
             "KAFKA_ASSIGNMENT": "eager"},
            "KAFKA_ASSIGNMENT=eager does not apply with KAFKA_GROUP_PROTOCOL=consumer",
        ),
    ],
)  # fmt: skip
def test_a_group_protocol_the_client_cannot_use_exits_2_with_one_line(
    env: dict[str, str], expected: str
) -> None:
    """kafka-python has no KIP-848 protocol; eager assignment has no meaning under it."""
    for service in ("detector", "generator"):
        done = run_command([sys.executable, "-m", service], {**env, "PATH": ""}, timeout=60)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert expected in lines[0]


def test_cooperative_assignment_may_stay_set_under_the_consumer_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """.env and compose always pass KAFKA_ASSIGNMENT=cooperative: it must not stop the service."""
    monkeypatch.setenv("KAFKA_CLIENT", "confluent")
    monkeypatch.setenv("KAFKA_GROUP_PROTOCOL", "consumer")
    monkeypatch.setenv("KAFKA_ASSIGNMENT", "cooperative")
    assert load_settings(DetectorSettings).kafka_group_protocol == "consumer"


def test_a_cluster_gets_a_transaction_timeout_that_outlives_a_failover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRANSACTION_TIMEOUT_MS", raising=False)
    single = load_settings(DetectorSettings)
    assert single.for_cluster(1).transaction_timeout_ms == 10_000
    on_cluster = single.for_cluster(3)
    assert on_cluster.transaction_timeout_ms == CLUSTER_TRANSACTION_TIMEOUT_MS > 10_000
    # Everything else is the same settings, the rules too.
    assert on_cluster.model_dump(exclude={"transaction_timeout_ms"}) == single.model_dump(
        exclude={"transaction_timeout_ms"}
    )
    assert on_cluster.rule_set == single.rule_set
    # A value the user set is kept, on a cluster too.
    monkeypatch.setenv("TRANSACTION_TIMEOUT_MS", "10000")
    assert load_settings(DetectorSettings).for_cluster(3).transaction_timeout_ms == 10_000
