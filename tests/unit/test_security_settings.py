"""Client security settings: validation as one line, secrets from files, never a secret printed,
and what client_options() hands to kafka-python. No broker needed."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from detector.config import DetectorSettings
from fraudcore.config import SettingsError, load_settings
from fraudcore.kafka.kafka_python.clients import client_options
from fraudcore.security import RedactSecrets
from generator.config import GeneratorSettings
from tests.kafka_helpers import run_command

SECURITY_VARS = [
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
    "KAFKA_SSL_CHECK_HOSTNAME",
]
SECRET = "s3cr3t-Pa55word-that-must-never-show"  # noqa: S105 - a test value to look for
KEY_PASSWORD = "key-Pa55-never-shown"  # noqa: S105 - a test value to look for
SECURITY_OPTION = ("security_", "sasl_", "ssl_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SECURITY_VARS, "KAFKA_BROKER_URL"]:
        monkeypatch.delenv(name, raising=False)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a client certificate whose key is encrypted with KEY_PASSWORD."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
    )  # fmt: skip
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-subj", "/CN=generator",
        "-passout", f"pass:{KEY_PASSWORD}", "-keyout", str(d / "client.key"),
        "-out", str(d / "client.csr"),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-days", "2", "-in", str(d / "client.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-set_serial", "7", "-out", str(d / "client.crt"),
    )  # fmt: skip
    (d / "key.password").write_text(KEY_PASSWORD + "\n")
    (d / "not-pem.txt").write_text("hello\n")
    return {name: d / name for name in ("ca.crt", "client.crt", "client.key", "key.password")} | {
        "not-pem": d / "not-pem.txt"
    }


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(GeneratorSettings)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- defaults


def test_plaintext_default_adds_no_security_option() -> None:
    for settings in (load_settings(GeneratorSettings), load_settings(DetectorSettings)):
        assert settings.kafka_security_protocol == "PLAINTEXT"
        options = client_options(settings, "x")
        assert options["bootstrap_servers"] == ["localhost:9092"]
        assert options["client_id"] == "x"
        assert not [name for name in options if name.startswith(SECURITY_OPTION)]


def test_sasl_ssl_maps_to_kafka_python_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: dict[str, Path]
) -> None:
    password_file = tmp_path / "generator.password"
    password_file.write_text(SECRET + "\n")  # the trailing newline is not part of it
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "scram-sha-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "generator")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(password_file))
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", str(pki["ca.crt"]))
    settings = load_settings(GeneratorSettings)
    options = client_options(settings, "generator")
    security = {k: v for k, v in options.items() if k.startswith(SECURITY_OPTION)}
    context = security.pop("ssl_context")
    assert security == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "generator",
        "sasl_plain_password": SECRET,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_mutual_tls_with_an_encrypted_key_from_a_file(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, Path]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", str(pki["ca.crt"]))
    monkeypatch.setenv("KAFKA_SSL_CERT_FILE", str(pki["client.crt"]))
    monkeypatch.setenv("KAFKA_SSL_KEY_FILE", str(pki["client.key"]))
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD_FILE", str(pki["key.password"]))
    monkeypatch.setenv("KAFKA_SSL_CHECK_HOSTNAME", "false")
    settings = load_settings(GeneratorSettings)
    options = client_options(settings, "generator")
    assert options["security_protocol"] == "SSL"
    assert "sasl_plain_password" not in options
    assert not options["ssl_context"].check_hostname
    assert KEY_PASSWORD not in settings.describe()


# --------------------------------------------------------------------------- one clear line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": SECRET},
            "needs KAFKA_SASL_USERNAME",
        ),
        (
            {"KAFKA_SASL_USERNAME": "generator", "KAFKA_SASL_PASSWORD": SECRET},
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "generator",
                "KAFKA_SASL_PASSWORD": SECRET,
                "KAFKA_SASL_PASSWORD_FILE": "{password_file}",
            },
            "set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS'"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_USERNAME": "generator",
                "KAFKA_SASL_PASSWORD": SECRET,
                "KAFKA_SSL_CA_FILE": "{ca}",
            },
            "KAFKA_SSL_CA_FILE set but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/no/such/ca.pem"},
            "KAFKA_SSL_CA_FILE='/no/such/ca.pem': Value error, no such file",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{not_pem}"},
            "not a PEM CA certificate",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "{directory}"},
            "not a regular file",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEY_FILE": "{key}"},
            "KAFKA_SSL_KEY_FILE is set without KAFKA_SSL_CERT_FILE",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERT_FILE": "{cert}",
                "KAFKA_SSL_KEY_FILE": "{key}",
            },
            "the client key (KAFKA_SSL_KEY_FILE) is encrypted: set KAFKA_SSL_KEY_PASSWORD",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CERT_FILE": "{cert}",
                "KAFKA_SSL_KEY_FILE": "{key}",
                "KAFKA_SSL_KEY_PASSWORD": SECRET,
            },
            "cannot load the client certificate and key",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "generator",
                "KAFKA_SASL_PASSWORD_FILE": "{empty}",
            },
            "KAFKA_SASL_PASSWORD_FILE=",
        ),
    ],
)
def test_bad_security_setting_is_one_line_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    pki: dict[str, Path],
    env: dict[str, str],
    expected: str,
) -> None:
    (tmp_path / "password").write_text(SECRET)
    (tmp_path / "empty").write_text("\n")
    paths = {
        "password_file": tmp_path / "password",
        "empty": tmp_path / "empty",
        "ca": pki["ca.crt"],
        "cert": pki["client.crt"],
        "key": pki["client.key"],
        "not_pem": pki["not-pem"],
        "directory": tmp_path,
    }
    message = _error(monkeypatch, **{k: v.format(**paths) for k, v in env.items()})
    assert expected in message
    assert message.startswith("invalid setting ")
    assert SECRET not in message
    assert KEY_PASSWORD not in message


def test_a_secret_field_error_never_echoes_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    class WithStrictSecret(GeneratorSettings):
        api_token: SecretStr = Field(SecretStr("x" * 40), min_length=40)

    monkeypatch.setenv("API_TOKEN", SECRET)
    with pytest.raises(SettingsError) as caught:
        load_settings(WithStrictSecret)
    assert "API_TOKEN=<hidden>" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_describe_never_shows_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "detector")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    line = load_settings(DetectorSettings).describe()
    assert SECRET not in line
    assert "KAFKA_SASL_PASSWORD=**********" in line
    assert "KAFKA_SASL_USERNAME=detector" in line


@pytest.mark.parametrize("service", ["generator", "detector"])
def test_service_with_bad_security_settings_exits_2_without_the_secret(service: str) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "KAFKA_SASL_USERNAME": service,
        "KAFKA_SASL_PASSWORD": SECRET,
        "PATH": "",
    }
    done = run_command([sys.executable, "-m", service], env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{service}: invalid setting KAFKA_SASL_USERNAME/")
    assert SECRET not in done.stderr + done.stdout


# --------------------------------------------------------------------------- logs


def test_redact_secrets_filter_covers_messages_arguments_and_tracebacks() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactSecrets([SECRET, ""]))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("plain %s and %r", SECRET, {"sasl_plain_password": SECRET})
        try:
            raise ValueError(f"bad {SECRET}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all(SECRET not in record for record in records), records
    assert "plain *** and {'sasl_plain_password': '***'}" in records[0]
    assert "ValueError: bad ***" in records[1]
