"""Which answers of a form are attachments, and the checks intake makes on the ids they hold.

A field holds attachments when its JSON Schema says `"x-attachment": true` (an array of ids, or
one id); the form's limits for it sit beside it in `"x-attachments"` (AttachmentRules' names).
Every failing id is a field error naming the field: unknown, another council's, quarantined, a
type or size the form does not take; too many, or too large together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.attachments.inspect import AttachmentRules
from hub.store.attachments import QUARANTINED, Attachment

RULE_KEYS = frozenset({"max_count", "max_file_bytes", "max_total_bytes", "allowed_types", "keep_location", "max_pixels"})


@dataclass(frozen=True)
class AttachmentField:
    name: str
    rules: AttachmentRules
    # an array of ids (else a single id)
    many: bool

    @property
    def pointer(self) -> str:
        return f"/{self.name}"

    def ids(self, payload: Any) -> list[str]:
        value = payload.get(self.name) if isinstance(payload, Mapping) else None
        if isinstance(value, str):
            return [value]
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def rules_from(raw: Any, where: str) -> AttachmentRules:
    """The `x-attachments` object as AttachmentRules; an unknown key is a ValueError naming it."""
    if raw is None:
        return AttachmentRules()
    if not isinstance(raw, Mapping) or not set(raw) <= RULE_KEYS:
        unknown = sorted(set(raw) - RULE_KEYS) if isinstance(raw, Mapping) else raw
        raise ValueError(f"{where}: x-attachments takes {', '.join(sorted(RULE_KEYS))}; not {unknown}")
    given = dict(raw)
    if "allowed_types" in given:
        given["allowed_types"] = frozenset(given["allowed_types"])
    return AttachmentRules(**given)


def attachment_fields(schema: Any) -> tuple[AttachmentField, ...]:
    """The form's top-level attachment fields (marked "x-attachment": true)."""
    found: list[AttachmentField] = []
    for name, sub in ((schema.get("properties") or {}) if isinstance(schema, Mapping) else {}).items():
        if isinstance(sub, Mapping) and sub.get("x-attachment") is True:
            found.append(AttachmentField(name, rules_from(sub.get("x-attachments"), f"properties.{name}"), sub.get("type") == "array"))
    return tuple(found)


@dataclass(frozen=True)
class Checked:
    errors: list[dict[str, str]]
    # (field, attachment id), each pair once
    links: list[tuple[str, str]]


def check(fields: tuple[AttachmentField, ...], payload: Any, found: Mapping[str, Attachment],
          names: Mapping[str, str] | None = None) -> Checked:
    """Every problem with the ids the payload names (`found`: the tenant's attachments among them;
    `names`: id -> file name, for files sent inline, so their errors name the file)."""
    errors: list[dict[str, str]] = []
    links: dict[tuple[str, str], None] = {}
    names = names or {}
    for field in fields:
        ids = field.ids(payload)
        rules = field.rules
        if len(ids) > rules.max_count:
            errors.append({"pointer": field.pointer, "detail": f"at most {rules.max_count} file(s) may be attached here; {len(ids)} were"})
        total = 0
        for index, attachment_id in enumerate(ids):
            pointer = f"{field.pointer}/{index}" if field.many else field.pointer
            label = f"the file {names[attachment_id]!r}" if attachment_id in names else f"attachment {attachment_id}"
            got = found.get(attachment_id)
            if got is None:
                errors.append({"pointer": pointer, "detail": f"there is no attachment {attachment_id} for this client: upload it first (POST /v1/attachments)"})
                continue
            if got.scan == QUARANTINED:
                errors.append({"pointer": pointer, "detail": f"{label} was quarantined: the virus scanner found something in it"})
                continue
            if got.media_type not in rules.allowed_types:
                errors.append({"pointer": pointer, "detail": f"{label} is {got.media_type}; this field takes {', '.join(sorted(rules.allowed_types))}"})
            if got.size > rules.max_file_bytes:
                errors.append({"pointer": pointer, "detail": f"{label} is {got.size} bytes; this field takes at most {rules.max_file_bytes} bytes a file"})
            total += got.size
            links[(field.name, attachment_id)] = None
        if total > rules.max_total_bytes:
            errors.append({"pointer": field.pointer, "detail": f"the files come to {total} bytes; this field takes at most {rules.max_total_bytes} bytes together"})
    return Checked(errors, list(links))
