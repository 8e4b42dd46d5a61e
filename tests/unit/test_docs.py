"""README.md and docs/: what they point at exists.

Every relative link (and its #anchor, in a Markdown file), every repository path named in
backticks (`fraudcore/core/rule.py`), and every make target named in code (`make run`,
`make consume-fraud MAX=5`) must be real: a renamed file or target fails here, not in a
reader's terminal.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
MAKE_TARGET = re.compile(r"(?:^|[\s;&|(])make\s+((?:[A-Z_]+=\S*\s+)*)([a-z][a-z0-9-]*)")
# A repository path: no spaces, at least one slash, no placeholders (<x>, {a,b}, *, $VAR).
REPO_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*/?")


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def strip_code(text: str) -> str:
    """The prose: fenced blocks and code spans removed, so a link inside code is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


@cache
def ignored(paths: tuple[str, ...]) -> frozenset[str]:
    """Those of `paths` that git ignores (made at run time: .venv, kafka/lib, bench/results)."""
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        input="\n".join(paths),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return frozenset(done.stdout.split())


@cache
def make_help_targets() -> frozenset[str]:
    done = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return frozenset(line.split()[0] for line in done.stdout.splitlines() if line.strip())


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_and_anchor_exists(doc: Path) -> None:
    broken = []
    for target in LINK.findall(strip_code(doc.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc_id(doc)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_named_exists(doc: Path) -> None:
    top_level = {p.name for p in REPO.iterdir()}
    named = set()
    for raw in CODE_SPAN.findall(FENCE.sub("", doc.read_text())):
        span = raw.strip()
        if "/" in span and REPO_PATH.fullmatch(span) and span.split("/")[0] in top_level:
            named.add(span.rstrip("/"))
    missing = [p for p in sorted(named) if not (REPO / p).exists()]
    missing = [p for p in missing if p not in ignored(tuple(missing))]
    assert not missing, f"{doc_id(doc)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_make_target_named_is_in_make_help(doc: Path) -> None:
    text = doc.read_text()
    code = [*CODE_SPAN.findall(FENCE.sub("", text)), *FENCE.findall(text)]
    named = {m.group(2) for snippet in code for m in MAKE_TARGET.finditer(snippet)}
    unknown = sorted(named - make_help_targets())
    assert not unknown, f"{doc_id(doc)} names make targets that `make help` lacks: {unknown}"


def test_the_checks_see_what_they_check() -> None:
    """The patterns find real links, paths and targets (an empty match would pass anything)."""
    readme = (REPO / "README.md").read_text()
    assert "docs/guarantees.md" in LINK.findall(strip_code(readme))
    assert "kafka/jars.lock" in CODE_SPAN.findall(readme)
    assert {"run", "test"} <= {m.group(2) for m in MAKE_TARGET.finditer(FENCE.findall(readme)[0])}
    assert "help" in make_help_targets()
    assert (
        slug("The local broker: Java and the Kafka jars")
        == "the-local-broker-java-and-the-kafka-jars"
    )
