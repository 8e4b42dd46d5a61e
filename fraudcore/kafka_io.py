"""The thin Kafka shell shared by both services: client options, waiting for the broker, topics.

Security. client_options() is the one place where the KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and
KAFKA_SSL_* settings become kafka-python options. A refusal by the broker must stop a service at
start-up with one line that says what is wrong, but kafka-python 3.0.12 does not report one: its
bootstrap retries a failed TLS handshake or SASL login until its timeout and then raises only
KafkaTimeoutError("Unable to bootstrap"). A wrong password even looks like "socket disconnected",
because the broker sends its error together with closing the connection and kafka-python drops
the bytes it read before the close. So with TLS or SASL, wait_for_broker() first logs in once
itself (check_login: TLS handshake with the same SSL context, ApiVersions, the SASL exchange with
kafka-python's own mechanism classes, on a blocking socket) and turns a refusal into
KafkaSecurityError, which is never retried. Missing ACLs are reported by the broker in ordinary
responses; ensure_topics() checks the ones the service needs up front.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaError,
    NoError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
    UnsupportedSaslMechanismError,
    for_code,
)
from kafka.net.sasl import get_sasl_mechanism
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslHandshakeRequest

from fraudcore.config import CommonSettings
from fraudcore.partitioner import KeyHashPartitioner
from fraudcore.runtime import StopFlag
from kafka import KafkaAdminClient

log = logging.getLogger(__name__)

# How long a producer waits to fill a batch: a few ms of latency buys batches, not requests.
PRODUCER_LINGER_MS = 5

# Longest single connection attempt while waiting for the broker (bounded by what is left).
ATTEMPT_SECONDS = 10.0

# OpenSSL verify codes: the broker's certificate chain does not lead to a CA we trust.
_UNTRUSTED_ISSUER = {2, 7, 18, 19, 20, 21}
_HOST_MISMATCH = {62, 64}
_EXPIRED = 10
_NOT_YET_VALID = 9


class BrokerUnavailableError(RuntimeError):
    """The broker cannot be used. Retriable (start again later), unless a KafkaSecurityError."""


class KafkaSecurityError(BrokerUnavailableError):
    """The broker refused this client for good: wrong credentials, an untrusted certificate, a
    security protocol that does not match the listener, or a missing ACL. Not retriable: the
    configuration must change. The message is one line and never holds a secret."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    # ACL operations the service needs on the topic ("READ", "WRITE"), checked at start-up.
    access: tuple[str, ...] = ()


RECONNECT_BACKOFF_MAX_MS = 1000


def client_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """Options every Kafka client of ours gets: where the broker is, who we are, how we log in."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        # Retry a lost connection at least once a second, as the Java clients do; kafka-python's
        # default backs off up to 30 s, so a client noticed a restarted broker only that late.
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if settings.kafka_security_protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = settings.kafka_security_protocol
    if settings.uses_sasl:
        password = settings.sasl_password
        if password is None or not settings.kafka_sasl_username:  # settings validation forbids it
            raise KafkaSecurityError("SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value()
    if settings.uses_tls:
        # Built (and checked) once from KAFKA_SSL_CA_FILE, _CERT_FILE, _KEY_FILE and
        # KAFKA_SSL_CHECK_HOSTNAME; kafka-python then ignores its own ssl_* options.
        options["ssl_context"] = settings.ssl_context
    return options


def producer_options(settings: CommonSettings, client_id: str) -> dict[str, Any]:
    """client_options plus what both services' producers share: durable, ordered, lean."""
    return {
        **client_options(settings, client_id),
        # Idempotent with acks=all: a retried send can neither be lost nor written twice.
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": PRODUCER_LINGER_MS,
        # kafka-python's own client metrics (nothing here reads them) cost its sender thread
        # ~15% more CPU per record (bench/, README "Performance").
        "metrics_enabled": False,
        "partitioner": KeyHashPartitioner(),  # same placement as the default, less CPU
    }


def principal(settings: CommonSettings) -> str:
    """Who the broker sees, for messages: the SASL user, else this client."""
    if settings.uses_sasl and settings.kafka_sasl_username:
        return f"user {settings.kafka_sasl_username!r}"
    return "this client"


# --------------------------------------------------------------------------- check_login


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


def _fail_if_broker_expects_tls(settings: CommonSettings, timeout: float) -> None:
    """PLAINTEXT could not connect: say so at once if the broker is a TLS listener."""
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        if _speaks_tls(host, port, timeout):
            raise KafkaSecurityError(
                f"the broker at {host}:{port} expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT: "
                "set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL) and KAFKA_SSL_CA_FILE"
            )


# --------------------------------------------------------------------------- waiting, topics


def wait_for_broker(
    settings: CommonSettings, stop: StopFlag, client_id: str
) -> KafkaAdminClient | None:
    """Return an admin client once the broker answers; None if asked to stop while waiting.

    Bounded by BROKER_WAIT_SECONDS and logged once per attempt, so a missing broker shows up
    as a clear message and an exit instead of a crash loop. A refusal (wrong credentials,
    untrusted certificate, protocol mismatch) raises KafkaSecurityError at once, never retried.
    """
    deadline = time.monotonic() + settings.broker_wait_seconds
    secured = settings.kafka_security_protocol != "PLAINTEXT"
    attempt = 0
    while not stop.is_set():
        attempt += 1
        budget = max(1.0, min(ATTEMPT_SECONDS, deadline - time.monotonic()))
        admin: KafkaAdminClient | None = None
        try:
            if secured:
                check_login(settings, client_id, timeout=budget)
            admin = KafkaAdminClient(
                **client_options(settings, client_id),
                request_timeout_ms=5000,
                bootstrap_timeout_ms=int(budget * 1000),
            )
            admin.describe_cluster()
        except (KafkaError, OSError) as exc:
            if admin is not None:
                admin.close()
            if not secured:
                _fail_if_broker_expects_tls(settings, budget)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailableError(
                    f"no Kafka broker answered at {settings.kafka_broker_url} within "
                    f"{settings.broker_wait_seconds:g}s (last error: {exc!r}); "
                    "check KAFKA_BROKER_URL and that the broker is up"
                ) from None
            log.warning(
                "waiting for Kafka broker at %s (attempt %d, %.0fs left): %s",
                settings.kafka_broker_url,
                attempt,
                left,
                type(exc).__name__,
            )
            stop.wait(min(2.0, left))
        else:
            log.info("connected to Kafka broker at %s", settings.kafka_broker_url)
            return admin
    return None


def _admin_principal(admin: KafkaAdminClient) -> str:
    user = admin.config.get("sasl_plain_username")
    return f"user {user!r}" if user else "this client"


def ensure_topics(admin: KafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Create the topics that are missing, then check that we may use them as TopicSpec.access says.

    The broker's default replication factor applies. Where the admin creates the topics (secure
    mode), a service without CREATE only reads the topic list. Raises KafkaSecurityError when a
    missing topic may not be created or a needed ACL is missing.
    """
    existing = set(admin.list_topics())  # only the topics we may DESCRIBE
    missing = {
        topic.name: {"num_partitions": topic.partitions, "configs": topic.configs}
        for topic in topics
        if topic.name not in existing
    }
    if missing:
        # Errors are read per topic first: an unauthorized create must not end up as a
        # timeout waiting for a topic that will never appear.
        result = admin.create_topics(missing, raise_errors=False)
        ready = []
        for outcome in result["topics"]:
            error = for_code(outcome["error_code"])
            name = outcome["name"]
            if error is NoError:
                log.info("created topic %s", name)
            elif error in (TopicAuthorizationFailedError, ClusterAuthorizationFailedError):
                who = _admin_principal(admin)
                raise KafkaSecurityError(
                    f"topic {name} is missing (or {who} may not see it) and {who} is not "
                    f"authorized to create it: have an admin create it and grant the ACLs"
                )
            elif error is not TopicAlreadyExistsError:  # another client may create it meanwhile
                raise error(f"cannot create topic {name}: {outcome.get('error_message')}")
            ready.append(name)
        admin.wait_for_topics(ready)  # visible, with a leader for every partition
    check_topic_access(admin, topics)


def check_topic_access(admin: KafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Fail now, with the operation and the topic, when an ACL the service needs is missing.

    Uses the operations the broker says we are authorized for (Metadata's
    topic_authorized_operations); without an authorizer the broker allows every operation.
    """
    wanted = {topic.name: topic.access for topic in topics if topic.access}
    if not wanted:
        return
    who = _admin_principal(admin)
    for topic in admin.describe_topics(list(wanted)):
        name = topic["name"]
        needed = wanted.get(name, ())
        if for_code(topic["error_code"]) is TopicAuthorizationFailedError:
            verbs = " and ".join(op.lower() for op in needed)
            raise KafkaSecurityError(f"{who} is not authorized to {verbs} topic {name}")
        allowed = topic.get("authorized_operations") or []
        if not allowed:
            continue  # the broker did not say; the first real request will tell
        lacking = [op for op in needed if op not in allowed and "ALL" not in allowed]
        if lacking:
            verbs = " and ".join(op.lower() for op in lacking)
            raise KafkaSecurityError(
                f"{who} is not authorized to {verbs} topic {name} "
                f"(allowed: {', '.join(sorted(op.lower() for op in allowed))})"
            )


def describe_refusal(exc: KafkaSecurityError | AuthorizationError, settings: CommonSettings) -> str:
    """One line for a refusal: a KafkaSecurityError's own, or one for an ACL refusal that
    kafka-python raised (consumer group, transactional id, topic)."""
    if isinstance(exc, KafkaSecurityError):
        return str(exc)
    who = principal(settings)
    detail = " ".join(str(arg) for arg in exc.args if str(arg)).strip()
    if not detail:  # kafka-python often names nothing; the detector's settings do
        if isinstance(exc, TransactionalIdAuthorizationFailedError):
            detail = repr(getattr(settings, "effective_transactional_id", ""))
        elif isinstance(exc, GroupAuthorizationFailedError):
            detail = repr(getattr(settings, "consumer_group", ""))
    kinds: list[tuple[type[AuthorizationError], str]] = [
        (TopicAuthorizationFailedError, "use topic"),
        (GroupAuthorizationFailedError, "use consumer group"),
        (TransactionalIdAuthorizationFailedError, "use transactional id"),
        (ClusterAuthorizationFailedError, "act on the cluster"),
    ]
    for kind, verb in kinds:
        if isinstance(exc, kind):
            return f"{who} is not authorized to {verb}" + (f" {detail}" if detail else "")
    return f"{who} is not authorized: {type(exc).__name__}" + (f": {detail}" if detail else "")
