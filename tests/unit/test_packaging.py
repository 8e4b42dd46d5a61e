"""pyproject.toml: `pip install .` gives the four commands, with the pinned runtime set."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_each_console_command_names_a_main_that_exists() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == {
        "fraud-generator",
        "fraud-detector",
        "fraud-audit",
        "fraud-backtest",
        "fraud-dashboard",
    }
    for command, target in scripts.items():
        module_name, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), command


def test_the_runtime_dependencies_are_the_pinned_requirements_files() -> None:
    files = PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert "requirements.txt" in files
    for name in files:
        lines = [line.split("#")[0].strip() for line in (REPO / name).read_text().splitlines()]
        requirements = [line for line in lines if line]
        assert requirements, name
        # setuptools reads these files as plain requirement lines: no -r, every one pinned.
        assert all("==" in line and not line.startswith("-") for line in requirements), name
