"""The pre-flight login.

kafka-python 3.0.12 reports a refused login only as KafkaTimeoutError("Unable to bootstrap"):
its bootstrap retries a failed TLS handshake or SASL login until its timeout, and a wrong
password even looks like "socket disconnected", because the broker sends its error together
with closing the connection and kafka-python drops the bytes it read before the close. So with
TLS or SASL the services first log in once themselves (check_login: the TLS handshake with the
same SSL context, ApiVersions, the SASL exchange with kafka-python's own mechanism classes from
kafka.net.sasl and its protocol classes from kafka.protocol, on a blocking socket) and turn a
refusal into KafkaSecurityError, which is never retried.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from kafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    NoError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    for_code,
)
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from fraudcore.config import CommonSettings
from fraudcore.errors import KafkaSecurityError

# OpenSSL verify codes: the broker's certificate chain does not lead to a CA we trust.
_UNTRUSTED_ISSUER = {2, 7, 18, 19, 20, 21}
_HOST_MISMATCH = {62, 64}
_EXPIRED = 10
_NOT_YET_VALID = 9


class _ConnectionClosedError(ConnectionError):
    """The broker closed the connection before answering."""


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)


def _round_trip(conn: socket.socket, parser: Any, request: Any) -> Any:
    """Send one request and read until its whole response is in (a blocking socket)."""
    parser.send_request(request)
    conn.sendall(parser.send_bytes())
    while True:
        data = conn.recv(65536)
        if not data:
            raise _ConnectionClosedError("the broker closed the connection")
        responses = parser.receive_bytes(data)
        if responses:
            return responses[0][1]


def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """True when a TLS handshake succeeds there (the certificate is not checked: only asks)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _speaks_plain_kafka(host: str, port: int, timeout: float) -> bool:
    """True when a plaintext ApiVersions request gets a Kafka answer there."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            _round_trip(conn, KafkaProtocol(client_id="probe"), ApiVersionsRequest(version=0))
            return True
    except (OSError, KafkaError):
        return False


def _untrusted_certificate(
    exc: ssl.SSLCertVerificationError, settings: CommonSettings, host: str, where: str
) -> str:
    prefix = f"TLS handshake with {where} failed: the broker's certificate"
    code = exc.verify_code
    if code in _UNTRUSTED_ISSUER:
        ca = settings.kafka_ssl_ca_file
        trusted = f"KAFKA_SSL_CA_FILE ({ca})" if ca else "a CA this system trusts"
        return f"{prefix} is not signed by {trusted}"
    if code in _HOST_MISMATCH:
        return (
            f"{prefix} is not valid for {host!r}: use a host name it was issued for in "
            "KAFKA_BROKER_URL (KAFKA_SSL_CHECK_HOSTNAME=false turns this check off)"
        )
    if code == _EXPIRED:
        return f"{prefix} has expired"
    if code == _NOT_YET_VALID:
        return f"{prefix} is not valid yet (check the clocks)"
    return f"{prefix} was rejected: {exc.verify_message}"


def _tls_refused(exc: ssl.SSLError, settings: CommonSettings, where: str) -> str:
    reason = str(exc.reason or exc)
    alerts = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "HANDSHAKE_FAILURE", "UNKNOWN_CA")
    if any(alert in reason for alert in (*alerts, "CERTIFICATE_UNKNOWN")):
        if settings.kafka_ssl_cert_file is None:
            return (
                f"TLS handshake with {where} failed: the broker requires a client certificate "
                f"(set KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE; {reason})"
            )
        return (
            f"TLS handshake with {where} failed: the broker rejected the client certificate "
            f"(KAFKA_SSL_CERT_FILE): {reason}"
        )
    if "WRONG_VERSION_NUMBER" in reason:
        protocol = settings.kafka_security_protocol
        return (
            f"the broker at {where} does not speak TLS: "
            f"KAFKA_SECURITY_PROTOCOL={protocol} does not match its listener"
        )
    return f"TLS handshake with {where} failed: {reason}"


def _sasl_login(
    conn: socket.socket, parser: Any, host: str, settings: CommonSettings, where: str
) -> None:
    mechanism = settings.kafka_sasl_mechanism
    user = settings.kafka_sasl_username
    password = settings.sasl_password
    protocol = settings.kafka_security_protocol
    handshake = _round_trip(conn, parser, SaslHandshakeRequest(mechanism=mechanism, version=1))
    error = for_code(handshake.error_code)
    if error is IllegalSaslStateError:
        raise KafkaSecurityError(
            f"the listener at {where} does not use SASL: KAFKA_SECURITY_PROTOCOL={protocol} does "
            "not match it"
        )
    offered = list(handshake.mechanisms or [])
    if error is UnsupportedSaslMechanismError or (error is NoError and mechanism not in offered):
        raise KafkaSecurityError(
            f"the broker at {where} does not accept SASL mechanism {mechanism} "
            f"(it offers {', '.join(offered) or 'none'}): check KAFKA_SASL_MECHANISM"
        )
    if error is not NoError:
        raise KafkaSecurityError(f"SASL handshake with {where} failed: {error.__name__}")
    client = get_sasl_mechanism(mechanism)(
        host=host,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password.get_secret_value() if password else "",
    )
    while not client.is_done():
        request = SaslAuthenticateRequest(auth_bytes=client.auth_bytes(), version=1)
        response = _round_trip(conn, parser, request)
        error = for_code(response.error_code)
        if error is SaslAuthenticationFailedError:
            raise KafkaSecurityError(
                f"authentication failed for user {user!r} ({mechanism}): wrong username or password"
            )
        if error is not NoError:
            raise KafkaSecurityError(
                f"authentication failed for user {user!r} ({mechanism}): {error.__name__}: "
                f"{response.error_message}"
            )
        try:
            client.receive(response.auth_bytes)
        except ValueError as exc:  # e.g. the server's SCRAM signature does not verify
            raise KafkaSecurityError(
                f"authentication with {where} failed for user {user!r} ({mechanism}): "
                f"the broker's answer does not verify ({exc})"
            ) from None


def _expect_no_sasl(conn: socket.socket, parser: Any, settings: CommonSettings, where: str) -> None:
    """A SASL listener answers ApiVersions but drops any other request before the login."""
    try:
        _round_trip(conn, parser, MetadataRequest(topics=[], version=1))
    except _ConnectionClosedError:
        raise KafkaSecurityError(
            f"the listener at {where} requires a SASL login (or is no client listener): "
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} does not match it "
            "(SASL_SSL or SASL_PLAINTEXT, with KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)"
        ) from None


def _tls_handshake(
    raw: socket.socket, host: str, port: int, settings: CommonSettings, timeout: float
) -> ssl.SSLSocket:
    where = f"{host}:{port}"
    context = settings.ssl_context
    if context is None:  # settings validation builds it whenever TLS is on
        raise KafkaSecurityError("TLS is on but no SSL context was built")
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise KafkaSecurityError(_untrusted_certificate(exc, settings, host, where)) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError) as exc:
        if _speaks_plain_kafka(host, port, timeout):
            raise KafkaSecurityError(
                f"the broker at {where} does not speak TLS (it answers plaintext requests): "
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} does not match "
                "its listener"
            ) from None
        raise _ConnectionClosedError(f"connection closed during the TLS handshake: {exc}") from None
    except ssl.SSLError as exc:
        raise KafkaSecurityError(_tls_refused(exc, settings, where)) from None


def _login(
    raw: socket.socket,
    host: str,
    port: int,
    settings: CommonSettings,
    *,
    client_id: str,
    timeout: float,
) -> None:
    where = f"{host}:{port}"
    conn = _tls_handshake(raw, host, port, settings, timeout) if settings.uses_tls else raw
    parser = KafkaProtocol(client_id=client_id)
    try:
        with conn:
            _round_trip(conn, parser, ApiVersionsRequest(version=0))
            if settings.uses_sasl:
                _sasl_login(conn, parser, host, settings, where)
            else:
                _expect_no_sasl(conn, parser, settings, where)
    except ssl.SSLCertVerificationError as exc:
        raise KafkaSecurityError(_untrusted_certificate(exc, settings, host, where)) from None
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        raise _ConnectionClosedError("the broker closed the TLS connection") from None
    except ssl.SSLError as exc:  # with TLS 1.3 a refused client certificate shows up here
        raise KafkaSecurityError(_tls_refused(exc, settings, where)) from None
    except (ConnectionError, KafkaError) as exc:
        if not settings.uses_tls and _speaks_tls(host, port, timeout):
            raise KafkaSecurityError(
                f"the broker at {where} expects TLS: KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka_security_protocol} does not match its listener (SASL_SSL or "
                "SSL, with KAFKA_SSL_CA_FILE)"
            ) from None
        if isinstance(exc, KafkaError):  # not a Kafka answer: treat as a dropped connection
            raise _ConnectionClosedError(f"unexpected answer: {exc!r}") from None
        raise


def check_login(settings: CommonSettings, client_id: str, timeout: float) -> None:
    """Log in once as kafka-python will (TLS, ApiVersions, SASL) on a blocking socket.

    Raises KafkaSecurityError when the broker refuses for good, OSError (retriable) when no
    bootstrap server can be reached or a connection drops: the broker may still be starting.
    """
    last_error: OSError = ConnectionError("no bootstrap server")
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            last_error = exc
            continue
        with raw:
            _login(raw, host, port, settings, client_id=client_id, timeout=timeout)
        return
    raise last_error


def fail_if_broker_expects_tls(settings: CommonSettings, timeout: float) -> None:
    """PLAINTEXT could not connect: say so at once if the broker is a TLS listener."""
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        if _speaks_tls(host, port, timeout):
            raise KafkaSecurityError(
                f"the broker at {host}:{port} expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT: "
                "set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL) and KAFKA_SSL_CA_FILE"
            )
