"""Reading the compose files as Compose itself does: YAML, `.env`, and ${VAR} interpolation.

Shared by the static checks and by the test that runs each compose service as a local process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)
_DOLLAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def references(text: str) -> Iterator[tuple[str, str | None, str]]:
    """(name, operator, argument) of every ${...} / $NAME in a string; `$$` is no reference."""
    for match in _DOLLAR.finditer(text):
        if match["escaped"]:
            continue
        if match["named"]:
            yield match["named"], None, ""
            continue
        parsed = _BRACED.match(match["braced"])
        assert parsed, f"unsupported interpolation ${{{match['braced']}}}"
        assert "$" not in (parsed["arg"] or ""), f"nested interpolation in {match[0]}"
        yield parsed["name"], parsed["op"], parsed["arg"] or ""


def _substitute(text: str, env: dict[str, str]) -> str:
    """The Compose Specification's interpolation rules (no nesting, which these files avoid)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        parsed = _BRACED.match(match["braced"])
        assert parsed, f"unsupported interpolation {match[0]}"
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"] or ""
        value = env.get(name)
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return arg if unset else str(value)
        if op in (":?", "?"):
            unset = value is None or (op == ":?" and value == "")
            assert not unset, f"{name} is required: {arg}"
            return str(value)
        if op in (":+", "+"):
            is_set = value is not None and (op == "+" or value != "")
            return arg if is_set else ""
        return value or ""

    return _DOLLAR.sub(replace, text)


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from walk_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_strings(value)


def interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, env)
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    return node


def read_dotenv() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate((REPO / ".env").read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f".env line {number} is not KEY=VALUE: {line!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f".env line {number}: bad name {key!r}"
        plain = value == value.strip() and not value.startswith(("'", '"'))
        assert plain, f".env line {number}: keep values plain (no quotes or padding): {line!r}"
        assert key not in values, f".env sets {key} twice"
        values[key] = value
    return values


def environment_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: (value if sep else None) for key, sep, value in pairs}
    return dict(env)


def as_str(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load_compose(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A compose file with its variables resolved from `env` (default: .env alone)."""
    doc = yaml.safe_load((REPO / name).read_text())
    return dict(interpolate(doc, read_dotenv() if env is None else env))


def parse_listeners(value: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` (Kafka listener lists) as {name: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def assert_only_tls_listeners(env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The secure broker's listeners: every one has a protocol, clients are advertised only
    SASL_SSL, the controller speaks TLS, nothing is PLAINTEXT. Returns the advertised ones."""
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert {protocols[name] for name in advertised} == {"SASL_SSL"}
    assert protocols["CONTROLLER"] == "SSL", "the controller listener is TLS too"
    assert "PLAINTEXT" not in protocols.values()
    return advertised
