"""The forms the hub accepts: JSON Schemas under `schemas/<form>/<version>.json`, compiled once.

Validation returns every failing field as a JSON pointer with a message a person understands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jsonschema_rs

from hub.attachments.fields import AttachmentField, attachment_fields
from hub.config.bundled import is_standards_uri, standards_path
from hub.errors import SchemaError
from hub.privacy.personal_fields import (
    DROP,
    EmailPath,
    email_paths,
    emails_at,
    overlaps,
    pii_paths,
    rewrite,
    strings_at,
)


@dataclass(frozen=True)
class FieldError:
    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "detail": self.message}


@dataclass(frozen=True)
class Form:
    form_id: str
    version: int
    schema: Mapping[str, Any]
    path: Path
    validator: Any = field(repr=False)
    # JSON pointers (with "*" for array items) of the fields marked "x-pii": true
    pii_paths: tuple[tuple[str, ...], ...] = ()
    # where a resident's e-mail address is: x-pii fields with "format": "email"
    email_paths: tuple[EmailPath, ...] = ()
    # the answers that hold attachment ids ("x-attachment": true) and each one's limits
    attachment_fields: tuple[AttachmentField, ...] = ()

    @property
    def title(self) -> str:
        return str(self.schema.get("title", self.form_id))

    def errors(self, payload: Any) -> list[FieldError]:
        found: list[FieldError] = []
        for error in self.validator.iter_errors(payload):
            for field_error in _field_errors(self.schema, error, self.pii_paths):
                if field_error not in found:
                    found.append(field_error)
        return found

    def pii_values(self, payload: Any) -> list[str]:
        """Every string found at an x-pii path, so logs can be scrubbed of them."""
        found: list[str] = []
        for path in self.pii_paths:
            found.extend(strings_at(payload, path))
        return found

    def subject_identifiers(self, payload: Any) -> list[tuple[str, str]]:
        """The resident's identifiers in a payload, as (kind, value): each e-mail address once."""
        found: dict[str, tuple[str, str]] = {}
        for email in self.email_paths:
            for value in emails_at(payload, email, 0):
                found.setdefault(value.strip().lower(), ("email", value.strip()))
        return list(found.values())

    def without_personal_data(self, payload: Any) -> Any:
        """The payload with every x-pii field removed (an erasure keeps the other answers)."""
        for path in self.pii_paths:
            payload = rewrite(payload, path, DROP)
        return {} if payload is DROP else payload

    def masked(self, payload: Any, mask: str = "[hidden]") -> Any:
        """The payload with every x-pii value shown as `mask`, for staff without the caseworker role."""
        for path in self.pii_paths:
            payload = rewrite(payload, path, mask)
        return payload


class FormRegistry:
    """All versions of every form; the newest version is the default."""

    def __init__(self, forms: Sequence[Form]) -> None:
        self._forms: dict[str, dict[int, Form]] = {}
        for form in forms:
            self._forms.setdefault(form.form_id, {})[form.version] = form

    def get(self, form_id: str, version: int | None = None) -> Form | None:
        versions = self._forms.get(form_id)
        if not versions:
            return None
        return versions.get(version if version is not None else max(versions))

    def __iter__(self) -> Iterator[Form]:
        for versions in self._forms.values():
            yield from versions.values()

    def ids(self) -> list[str]:
        return sorted(self._forms)


def compile_form(form_id: str, version: int, path: Path, standards_dir: Path | None = None) -> Form:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: cannot read schema: {exc}") from None
    try:
        validator = schema_validator(schema, path, standards_dir=standards_dir)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        raise SchemaError(f"{path}: schema does not compile: {exc}") from None
    emails = tuple(dict.fromkeys(email_paths(schema, schema, (), False, (), frozenset())))
    try:
        attached = attachment_fields(schema)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{path}: {exc}") from None
    return Form(form_id, version, schema, path, validator, tuple(pii_paths(schema, ())), emails, attached)


def schema_validator(schema: Any, path: Path, validate_formats: bool = True, standards_dir: Path | None = None) -> Any:
    """A validator for the schema read from `path`. A relative `$ref` is a local file beside it;
    `standards:///<folder>/<file>` is a public standard the hub ships (or `standards_dir`, a
    council's own copies); nothing is ever downloaded."""

    def retrieve(uri: str) -> Any:
        # a form must not change because a web server did, nor stall start-up on the network
        if is_standards_uri(uri):
            return _read_json(uri, standards_path(uri, standards_dir))
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise ValueError(f"{uri}: only local files and standards:/// may be referenced, not {parts.scheme or 'relative'} URLs")
        return _read_json(uri, Path(url2pathname(parts.path)))

    return jsonschema_rs.validator_for(schema, validate_formats=validate_formats, base_uri=path.resolve().as_uri(), retriever=retrieve)


def _read_json(uri: str, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{uri}: cannot read referenced schema: {exc}") from None


def load_forms(directory: Path, standards_dir: Path | None = None) -> FormRegistry:
    """Compiles every `<form>/<version>.json`; raises SchemaError listing every bad schema."""
    forms: list[Form] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*/*.json")):
        if not path.stem.isdigit():
            problems.append(f"{path}: schema files are named by version number, like 1.json")
            continue
        try:
            forms.append(compile_form(path.parent.name, int(path.stem), path, standards_dir))
        except SchemaError as exc:
            problems.append(str(exc))
    if problems:
        raise SchemaError("\n".join(problems))
    return FormRegistry(forms)


def _pointer(parts: Sequence[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _subschema(schema: Any, schema_path: Sequence[str | int]) -> Any:
    node = schema
    for part in schema_path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return node


def _label(schema: Mapping[str, Any], name: str) -> str:
    title = schema.get("title") if isinstance(schema, Mapping) else None
    return str(title) if title else name.replace("_", " ").capitalize()


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a group of fields",
    "null": "empty",
}
_FORMAT_WORDS = {
    "email": "an email address, like name@example.com",
    "date": "a date, like 2026-11-23",
    "date-time": "a date and time, like 2026-11-23T09:30:00Z",
    "uri": "a web address, like https://example.org/photo.jpg",
    "time": "a time, like 09:30:00",
}


def _field_errors(schema: Mapping[str, Any], error: Any, pii_paths: tuple[tuple[str, ...], ...] = ()) -> list[FieldError]:
    """One or more plain-English errors for one validation error.

    When no branch of a oneOf/anyOf matches, the errors of the closest branch are given
    (a wrong UPRN says so, rather than "matches none of the accepted forms").
    """
    name = error.kind.name
    if name in ("oneOf", "anyOf"):
        owner = _subschema(schema, list(error.schema_path)[:-1])
        branches = _branches(error)
        if branches and not (isinstance(owner, Mapping) and owner.get("x-error-message")):
            best = min(branches, key=_distance)
            if _distance(best)[0]:
                # the payload names no branch (an unknown `source` or designation `value`): say
                # which values would, rather than quoting one branch's
                return [_choices(error, best)]
            return [fe for e in best for fe in _field_errors(schema, e, pii_paths)]
    personal = any(overlaps(list(error.instance_path), path) for path in pii_paths)
    return [_field_error(schema, error, personal)]


_DISCRIMINATORS = ("const", "enum")
# the most accepted values one error lists
MAX_CHOICES = 12


def _branches(error: Any) -> list[list[Any]]:
    """The errors of each branch of a failed oneOf/anyOf (a branch with none matched, and its
    oneOf failed because several did)."""
    return [branch for branch in error.kind.as_dict().get("context") or [] if branch]


def _distance(branch: list[Any]) -> tuple[int, int, int]:
    """How far a payload is from one branch of a oneOf/anyOf, nearest first: the branches it names
    (a `const` or `enum` it fails, such as `source: "PlanX"` or a designation's `value`) before the
    ones it does not, then fewer errors, then errors deeper in the payload. A nested oneOf/anyOf
    counts as its nearest branch."""
    mismatched = errors = 0
    for error in branch:
        if error.kind.name in ("oneOf", "anyOf") and (inner := _branches(error)):
            nearest = min(inner, key=_distance)
            inner_mismatched, inner_errors, _ = _distance(nearest)
            mismatched, errors = mismatched + inner_mismatched, errors + inner_errors
        else:
            mismatched += error.kind.name in _DISCRIMINATORS
            errors += 1
    return mismatched, errors, -max(len(error.instance_path) for error in branch)


def _leaf_errors(error: Any) -> Iterator[Any]:
    """Every error under a oneOf/anyOf, through nested ones."""
    for branch in _branches(error):
        for inner in branch:
            if inner.kind.name in ("oneOf", "anyOf") and _branches(inner):
                yield from _leaf_errors(inner)
            else:
                yield inner


def _choices(error: Any, nearest: list[Any]) -> FieldError:
    """"<field> must be one of: ..." for the field where the nearest branch's `const` or `enum`
    failed, listing what every branch accepts there."""
    leaves = list(_leaf_errors(error))
    where = next(list(e.instance_path) for e in [*nearest, *leaves] if e.kind.name in _DISCRIMINATORS)
    accepted: list[str] = []
    for leaf in leaves:
        if leaf.kind.name in _DISCRIMINATORS and list(leaf.instance_path) == where:
            details = leaf.kind.as_dict()
            for value in details.get("options", [details.get("expected_value")]):
                if str(value) not in accepted:
                    accepted.append(str(value))
    shown = ", ".join(accepted[:MAX_CHOICES]) + (f" (and {len(accepted) - MAX_CHOICES} more)" if len(accepted) > MAX_CHOICES else "")
    label = _label({}, str(where[-1])) if where else "The submission"
    return FieldError(_pointer(where), f"{label} must be one of: {shown}")


def _field_error(schema: Mapping[str, Any], error: Any, personal: bool = False) -> FieldError:
    kind = error.kind
    name = kind.name
    instance_path = list(error.instance_path)
    schema_path = list(error.schema_path)
    # the schema that holds the failing keyword, to read its title and x-error-message
    owner = _subschema(schema, schema_path[:-1])
    details = kind.as_dict()
    field_name = str(instance_path[-1]) if instance_path else "This form"
    label = _label(owner, field_name) if instance_path else "The submission"

    if name == "required":
        missing = str(details["property"]).strip('"')
        prop = _subschema(owner, ["properties", missing])
        return FieldError(_pointer(instance_path + [missing]), f"{_label(prop, missing)} is required")
    if name == "additionalProperties":
        unexpected = ", ".join(str(u) for u in details.get("unexpected", []))
        return FieldError(_pointer(instance_path), f"{unexpected}: not a field of this form")
    custom = owner.get("x-error-message") if isinstance(owner, Mapping) else None
    if custom:
        return FieldError(_pointer(instance_path), str(custom))
    if name == "type":
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in details.get("types", []))
        message = f"{label} must be {words}"
    elif name == "enum":
        options = ", ".join(str(o) for o in owner.get("enum", []))
        message = f"{label} must be one of: {options}"
    elif name == "format":
        fmt = str(details.get("format"))
        message = f"{label} must be {_FORMAT_WORDS.get(fmt, 'in ' + fmt + ' format')}"
    elif name == "pattern":
        message = f"{label} is not in the expected format"
    elif name == "maxLength":
        message = f"{label} must be {details['limit']} characters or fewer"
    elif name == "minLength":
        message = f"{label} must be at least {details['limit']} characters" if details["limit"] > 1 else f"{label} must not be empty"
    elif name in ("maximum", "exclusiveMaximum"):
        message = f"{label} must be {'at most' if name == 'maximum' else 'less than'} {details['limit']}"
    elif name in ("minimum", "exclusiveMinimum"):
        message = f"{label} must be {'at least' if name == 'minimum' else 'more than'} {details['limit']}"
    elif name == "maxItems":
        message = f"{label} must have {details['limit']} items or fewer"
    elif name == "minItems":
        message = f"{label} must have at least {details['limit']} item(s)"
    elif name in ("oneOf", "anyOf"):
        message = f"{label} does not match any of the accepted forms"
    elif personal:
        # the validator's own message quotes the value, and an x-pii value never goes back out
        # (nor does a group of fields that holds one)
        message = f"{label} is not valid"
    else:
        message = f"{label}: {error.message}"
    return FieldError(_pointer(instance_path), message)
