"""Reading the project's Dockerfile: instructions, stages, and what one target builds.

The one Dockerfile builds both services as two stages on a shared base (docker-compose.yml picks
one with build.target). Shared by the static checks and by the test that runs each compose
service as a local process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.compose.compose_files import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


@dataclass(frozen=True)
class Stage:
    name: str  # "" when the stage has no `AS name`
    base: str  # the FROM image, or the name of an earlier stage
    instructions: list[tuple[str, str]]  # after its FROM


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    out: list[Stage] = []
    for keyword, args in instructions(path):
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            out.append(Stage(name=name, base=words[0], instructions=[]))
            continue
        assert out or keyword == "ARG", f"{path}: {keyword} before the first FROM"
        if out:
            out[-1].instructions.append((keyword, args))
    return out


def chain(target: str, path: Path = DOCKERFILE) -> list[Stage]:
    """The stages `docker build --target <target>` runs through, from the image's FROM up."""
    by_name = {stage.name: stage for stage in stages(path) if stage.name}
    assert target in by_name, f"{path} has no stage {target!r} (has {sorted(by_name)})"
    out = [by_name[target]]
    while out[0].base in by_name:
        out.insert(0, by_name[out[0].base])
    return out


def target_instructions(target: str, path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """What builds the target's image, base stages first (their FROM lines included)."""
    return [
        instruction
        for stage in chain(target, path)
        for instruction in [("FROM", stage.base), *stage.instructions]
    ]


def target_cmd(target: str, path: Path = DOCKERFILE) -> list[str]:
    """The exec-form CMD the target's image runs."""
    cmds = [args for keyword, args in target_instructions(target, path) if keyword == "CMD"]
    assert cmds, f"{path}: no CMD for {target}"
    command = json.loads(cmds[-1])
    assert isinstance(command, list), f"{path}: the CMD of {target} is not in exec form"
    return [str(part) for part in command]


def copy_sources(args: str) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    return parts[:-1]
