"""Where the Compose Specification JSON schema comes from, for the static compose tests.

The schema is not committed here. It is installed from PyPI, as a file inside a pinned package:
check-jsonschema (requirements-dev.txt) vendors `compose-spec.json`, the official schema of
the Compose Specification (compose-spec/compose-spec, schema/compose-spec.json), refreshed at
each of its releases. Reading it needs no network at test time and never runs the package's
code: the file is located through the installed distribution's own file list (RECORD).

A missing package is a failure, not a skip: `pip install -r requirements-dev.txt` brings it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from typing import Any

from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

SCHEMA_DISTRIBUTION = "check-jsonschema"
SCHEMA_FILE = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"


class ComposeSchemaUnavailableError(RuntimeError):
    """The schema cannot be had: the package that ships it is missing or changed its layout."""


@dataclass(frozen=True)
class ComposeSchema:
    schema: dict[str, Any]
    source: str  # e.g. "check-jsonschema 0.39.0: check_jsonschema/.../compose-spec.json"
    sha256: str

    def validator(self) -> Validator:
        """A validator of the draft the schema declares (2020-12 as of check-jsonschema 0.39).

        No format checker on purpose: Compose durations such as "30s" are not the ISO 8601
        durations that JSON Schema's "duration" format means, so format checks would only add
        false failures where an optional format library happens to be installed.
        """
        cls = validator_for(self.schema)
        cls.check_schema(self.schema)
        return cls(self.schema)


def load_compose_schema() -> ComposeSchema:
    try:
        dist = importlib.metadata.distribution(SCHEMA_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ComposeSchemaUnavailableError(
            f"{SCHEMA_DISTRIBUTION} is not installed; it ships the Compose Specification schema "
            "(pip install -r requirements-dev.txt)"
        ) from None
    entry = next((f for f in dist.files or () if str(f) == SCHEMA_FILE), None)
    if entry is None:
        raise ComposeSchemaUnavailableError(
            f"{SCHEMA_DISTRIBUTION} {dist.version} has no {SCHEMA_FILE}; pick a version that "
            "still vendors the compose-spec schema"
        )
    raw = entry.read_binary()
    schema = json.loads(raw)
    if not isinstance(schema, dict) or schema.get("title") != "Compose Specification":
        raise ComposeSchemaUnavailableError(
            f"{SCHEMA_FILE} is not the Compose Specification schema"
        )
    return ComposeSchema(
        schema=schema,
        source=f"{SCHEMA_DISTRIBUTION} {dist.version}: {SCHEMA_FILE}",
        sha256=hashlib.sha256(raw).hexdigest(),
    )
