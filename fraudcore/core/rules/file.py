"""The rules file (RULES_FILE): YAML listing the rules in order, each with a name, a type and
that type's settings (docs/rules.md). Every refusal is one line naming the file, the rule and
the field, so that a service can exit 2 with it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fraudcore.core.rules import RULE_TYPES
from fraudcore.core.rules.ruleset import RuleSet


class RulesFileError(ValueError):
    """The rules file cannot be used; the message is one line."""


class _Loader(yaml.SafeLoader):
    """YAML with its decimal numbers read as Decimal, so a threshold of 900.10 is exact."""


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> object:
    text = loader.construct_scalar(node)
    try:
        return Decimal(str(text).replace("_", ""))
    except InvalidOperation:
        return loader.construct_yaml_float(node)  # .inf, .nan: refused by the settings


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


def load_rules(path: Path | str) -> RuleSet:
    """The rule set of the rules file at `path`; RulesFileError (one line) when it is unusable."""
    where = f"RULES_FILE {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RulesFileError(f"{where}: cannot be read: {reason}") from None
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RulesFileError(f"{where}: not valid YAML{at}: {problem}") from None
    return parse_rules(document, where)


def parse_rules(document: object, where: str) -> RuleSet:
    """The rule set of a parsed rules file; `where` names the file in the messages."""
    if not isinstance(document, dict) or "rules" not in document:
        raise RulesFileError(f"{where}: expected a mapping with a `rules:` list")
    extra = sorted(str(key) for key in document if key != "rules")
    if extra:
        raise RulesFileError(f"{where}: unknown top-level field {extra[0]!r} (only `rules`)")
    listed = document["rules"]
    if not isinstance(listed, list):
        raise RulesFileError(f"{where}: `rules` must be a list of rules")
    if not listed:
        raise RulesFileError(f"{where}: `rules` is empty: list at least one rule")
    rules = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(listed, start=1):
        rule = _parse_rule(entry, f"{where}: rule #{number}")
        if rule.name in seen:
            raise RulesFileError(
                f"{where}: rule #{number} ({rule.name}): field name: duplicate name "
                f"{rule.name!r}, already used by rule #{seen[rule.name]}"
            )
        seen[rule.name] = number
        rules.append(rule)
    return RuleSet(rules)


def _parse_rule(entry: object, where: str) -> Any:
    if not isinstance(entry, dict):
        raise RulesFileError(f"{where}: expected a mapping with name, type and settings")
    name = entry.get("name")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    type_name = entry.get("type")
    if type_name is None:
        raise RulesFileError(f"{where}: field type: missing (one of {', '.join(RULE_TYPES)})")
    rule_type = RULE_TYPES.get(type_name) if isinstance(type_name, str) else None
    if rule_type is None:
        raise RulesFileError(
            f"{where}: field type: unknown rule type {type_name!r} (one of {', '.join(RULE_TYPES)})"
        )
    try:
        return rule_type.model_validate(entry)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            problem = f"not a setting of {type_name}"
        elif error["type"] == "missing":
            problem = "missing"
        else:
            problem = error["msg"].removeprefix("Value error, ")
            if not isinstance(error.get("input"), dict | list):
                problem += f" (got {error.get('input')!r})"
        raise RulesFileError(f"{where}: field {field}: {problem}") from None
