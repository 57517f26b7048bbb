"""Mapping cases: fixtures that prove a mapping, each a payload (or a form sample), its meta and
the exact record the mapping must produce. `hub config check` and the tests run them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import ConfigError


@dataclass(frozen=True)
class MappingCase:
    """A fixture proving a mapping: this payload and meta must produce exactly `expected`."""

    name: str
    key: tuple[str, str]
    payload: dict[str, Any]
    meta: dict[str, Any]
    expected: dict[str, Any]
    path: Path
    # what the mapping sees as `attachments` (field -> its files' items, hub.attachments.delivery `scope`)
    attachments: dict[str, Any] | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def mapping_cases(directory: Path, schemas: Path | None = None) -> list[MappingCase]:
    """Every `<form>.<connector>.cases/<name>.json` under `directory`; samples come from `schemas`."""
    schemas = schemas if schemas is not None else directory.parent / "schemas"
    cases: list[MappingCase] = []
    for folder in sorted(p for p in directory.glob("*.cases") if p.is_dir()):
        form_id, _, connector = folder.name.removesuffix(".cases").partition(".")
        for path in sorted(folder.glob("*.json")):
            doc = _read_json(path)
            if not isinstance(doc, dict) or ("sample" in doc) == ("payload" in doc) or not all(
                isinstance(doc.get(k), dict) for k in ("meta", "expected")
            ):
                raise ConfigError(f"{path}: a case needs meta and expected objects and one of sample or payload")
            if unknown := doc.keys() - {"meta", "expected", "sample", "payload", "description", "attachments"}:
                raise ConfigError(f"{path}: unknown keys {sorted(unknown)} in a mapping case")
            payload = doc.get("payload")
            if "sample" in doc:
                sample = schemas / form_id / "samples" / f"{doc['sample']}.json"
                if not sample.is_file():
                    raise ConfigError(f"{path}: sample {doc['sample']!r} not found at {sample}")
                payload = _read_json(sample)
            if not isinstance(payload, dict):
                raise ConfigError(f"{path}: the payload must be a JSON object")
            attached = doc.get("attachments")
            if attached is not None and not (isinstance(attached, dict) and all(isinstance(v, list) for v in attached.values())):
                raise ConfigError(f"{path}: attachments must map each attachment field to a list of its files")
            name = f"{folder.name.removesuffix('.cases')}/{path.stem}"
            cases.append(MappingCase(name, (form_id, connector), payload, doc["meta"], doc["expected"], path, attached))
    return cases
