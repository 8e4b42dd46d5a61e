"""Client security settings (TLS, SASL) shared by both services, and keeping secrets out of logs.

The env names follow the usual KAFKA_* client conventions. Every secret is a pydantic SecretStr
(printed as ********** by describe()) and can come from a file instead (`*_FILE`, as with
Docker and Kubernetes secrets). Validation turns every mistake into one line that names the
variable and never contains a secret; the Kafka adapters (fraudcore/kafka/) map the result onto
kafka-python's options.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]

# Longest secret file we read: a password, not a key or a certificate.
MAX_SECRET_FILE_BYTES = 4096

# Shown in place of a secret in log lines.
REDACTED = "***"


def _check_readable_file(value: Path | None) -> Path | None:
    """A path setting must name a regular file this process can read."""
    if value is None:
        return None
    if not value.exists():
        raise ValueError("no such file")
    if not value.is_file():
        raise ValueError("not a regular file")
    if not os.access(value, os.R_OK):
        raise ValueError("not readable by this user (check its owner and mode)")
    return value


def _read_secret_file(path: Path, name: str) -> SecretStr:
    """The file's content without the trailing newline an editor or `echo` adds."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{name}={str(path)!r}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{name}={str(path)!r}: longer than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{name}={str(path)!r}: not UTF-8 text") from None
    if not text:
        raise ValueError(f"{name}={str(path)!r}: the file is empty")
    return SecretStr(text)


def is_secret(annotation: Any) -> bool:
    """True for a SecretStr field (or an optional one): its value is never printed."""
    return annotation is SecretStr or SecretStr in get_args(annotation)


class _KeyPasswordMissingError(Exception):
    """The client key is encrypted but no password was given."""


class KafkaSecuritySettings(BaseSettings):
    """How a service authenticates to Kafka and checks the broker. Default: PLAINTEXT, as before."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    # TLS: the CA that signed the broker's certificate (unset: the system's trusted CAs), and
    # for mutual TLS the client's certificate and key (PEM), the key possibly encrypted.
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: Path | None = None
    kafka_ssl_check_hostname: bool = True

    _sasl_password: SecretStr | None = PrivateAttr(None)
    _ssl_key_password: SecretStr | None = PrivateAttr(None)
    _ssl_context: ssl.SSLContext | None = PrivateAttr(None)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_names(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "kafka_sasl_password_file",
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
        "kafka_ssl_key_password_file",
    )
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        return _check_readable_file(value)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSecuritySettings:
        protocol = self.kafka_security_protocol
        self._sasl_password = self._one_secret(
            self.kafka_sasl_password, self.kafka_sasl_password_file, "KAFKA_SASL_PASSWORD"
        )
        self._ssl_key_password = self._one_secret(
            self.kafka_ssl_key_password,
            self.kafka_ssl_key_password_file,
            "KAFKA_SSL_KEY_PASSWORD",
        )
        if self.uses_sasl:
            if not self.kafka_sasl_username or self._sasl_password is None:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )
        elif self.kafka_sasl_username or self._sasl_password is not None:
            # Credentials that would be silently ignored: the connection would not log in.
            raise ValueError(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but "
                f"KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                "(SASL_SSL or SASL_PLAINTEXT does)"
            )
        tls_settings = [
            name
            for name, value in (
                ("KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file),
                ("KAFKA_SSL_CERT_FILE", self.kafka_ssl_cert_file),
                ("KAFKA_SSL_KEY_FILE", self.kafka_ssl_key_file),
                ("KAFKA_SSL_KEY_PASSWORD", self._ssl_key_password),
            )
            if value is not None
        ]
        if tls_settings and not self.uses_tls:
            raise ValueError(
                f"{', '.join(tls_settings)} set but KAFKA_SECURITY_PROTOCOL={protocol} does not "
                "use TLS (SSL or SASL_SSL does)"
            )
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise ValueError("KAFKA_SSL_KEY_FILE is set without KAFKA_SSL_CERT_FILE")
        if self._ssl_key_password is not None and self.kafka_ssl_cert_file is None:
            raise ValueError("KAFKA_SSL_KEY_PASSWORD is set without KAFKA_SSL_CERT_FILE")
        if self.uses_tls:
            self._ssl_context = self._build_ssl_context()
        return self

    @staticmethod
    def _one_secret(value: SecretStr | None, file: Path | None, name: str) -> SecretStr | None:
        if value is not None and file is not None:
            raise ValueError(f"set {name} or {name}_FILE, not both")
        if file is not None:
            return _read_secret_file(file, f"{name}_FILE")
        if value is not None and not value.get_secret_value():
            raise ValueError(f"{name} is empty")
        return value

    def _build_ssl_context(self) -> ssl.SSLContext:
        """What kafka-python builds from ssl_* options, checked here so a bad file is one line."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.kafka_ssl_check_hostname
        context.verify_mode = ssl.CERT_REQUIRED
        if self.kafka_ssl_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(self.kafka_ssl_ca_file))
            except ssl.SSLError as exc:
                raise ValueError(
                    f"KAFKA_SSL_CA_FILE={str(self.kafka_ssl_ca_file)!r}: not a PEM CA "
                    f"certificate ({exc.reason or exc})"
                ) from None
        else:
            context.load_default_certs()
        if self.kafka_ssl_cert_file is not None:
            key_password = self._ssl_key_password

            def password() -> bytes:
                # Never let OpenSSL prompt on the terminal for an encrypted key.
                if key_password is None:
                    raise _KeyPasswordMissingError
                return key_password.get_secret_value().encode()

            key_file = self.kafka_ssl_key_file
            try:
                context.load_cert_chain(
                    certfile=str(self.kafka_ssl_cert_file),
                    keyfile=None if key_file is None else str(key_file),
                    password=password,
                )
            except _KeyPasswordMissingError:
                raise ValueError(
                    "the client key (KAFKA_SSL_KEY_FILE) is encrypted: set KAFKA_SSL_KEY_PASSWORD "
                    "or KAFKA_SSL_KEY_PASSWORD_FILE"
                ) from None
            except ssl.SSLError as exc:
                raise ValueError(
                    "cannot load the client certificate and key (KAFKA_SSL_CERT_FILE, "
                    "KAFKA_SSL_KEY_FILE): not PEM, the key does not belong to the certificate, or "
                    f"a wrong KAFKA_SSL_KEY_PASSWORD ({exc.reason or exc})"
                ) from None
        return context

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl_password(self) -> SecretStr | None:
        """KAFKA_SASL_PASSWORD, or the content of KAFKA_SASL_PASSWORD_FILE."""
        return self._sasl_password

    @property
    def principal(self) -> str:
        """Who the broker sees, for messages: the SASL user, else this client."""
        if self.uses_sasl and self.kafka_sasl_username:
            return f"user {self.kafka_sasl_username!r}"
        return "this client"

    @property
    def ssl_key_password(self) -> SecretStr | None:
        """KAFKA_SSL_KEY_PASSWORD, or the content of KAFKA_SSL_KEY_PASSWORD_FILE."""
        return self._ssl_key_password

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS client context (CA, client certificate), built once; None without TLS."""
        return self._ssl_context

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for redacting log lines."""
        secrets = [self._sasl_password, self._ssl_key_password]
        return [secret.get_secret_value() for secret in secrets if secret is not None]


class RedactSecrets(logging.Filter):
    """Replaces known secret values in every record a handler emits, tracebacks included."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def redact_secrets_in_logs(settings: KafkaSecuritySettings) -> None:
    """Install RedactSecrets on the root logger's handlers (call after configuring logging)."""
    secrets = settings.secret_values()
    if not secrets:
        return
    redactor = RedactSecrets(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
