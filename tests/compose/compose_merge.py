"""Merging compose files as `docker compose -f base.yml -f override.yml` does.

Used by the secure variant's static checks and by the test that runs its compose commands
without Docker (tests/integration/test_security.py).
"""

from __future__ import annotations

from typing import Any


def _unique_key(attribute: str, item: Any) -> Any:
    """The key by which Compose merges `ports`, `volumes` and `secrets` entries."""
    if isinstance(item, dict):
        if attribute == "volumes":
            return item.get("target")
        if attribute == "secrets":
            return item.get("target") or item.get("source")
        return (item.get("published"), item.get("target"))
    text = str(item)
    if attribute == "volumes":
        return text.split(":")[1] if ":" in text else text
    if attribute == "ports":
        return tuple(text.split(":")[-2:])
    return text


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """The Compose Specification's merge: mappings merged, sequences appended; command,
    entrypoint and healthcheck.test replaced; ports, volumes and secrets unique by target."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            in_service = len(path) == 2 and path[0] == "services"
            replaced = (in_service and key in ("command", "entrypoint")) or (
                key == "test" and path[-1:] == ("healthcheck",)
            )
            if key not in merged or replaced:
                merged[key] = value
            elif in_service and key in ("ports", "volumes", "secrets"):
                items = {_unique_key(key, item): item for item in merged[key]}
                items.update({_unique_key(key, item): item for item in value})
                merged[key] = list(items.values())
            else:
                merged[key] = merge(merged[key], value, (*path, key))
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override
