"""The peer's validation: python-jsonschema (Draft 2020-12, formats checked) on the hub's own
missed-bin-collection schema, with `pattern` run by the `regex` module.

The schema's name patterns use `\\p{L}`, which Python's `re` cannot compile, so a team using
python-jsonschema has to plug in `regex` for patterns as done here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import regex
from jsonschema import Draft202012Validator, ValidationError, validators

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "missed-bin-collection" / "1.json"


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


PeerValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def peer_validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return PeerValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
