"""Open311 GeoReport v2 requests as hub submissions: the services a council offers (each one a hub
form, `config/open311/services.yaml`) and the field rules that turn a request into that form's payload.

The HTTP side is hub.api.routes.georeport; what the payload then meets is hub.intake.accept.
"""

from __future__ import annotations

import mimetypes
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ConfigError

Value = str | list[str]
GEOREPORT_FIELDS = frozenset({
    "lat", "long", "address_string", "address_id", "email", "first_name", "last_name", "phone",
    "description", "media_url", "device_id", "account_id",
})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Attribute(_Model):
    code: str
    datatype: Literal["string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"]
    required: bool = False
    description: str
    values: dict[str, str] = Field(default_factory=dict)


class FieldRule(_Model):
    """Where one form field comes from: the first GeoReport field in `from` that has a value."""

    sources: tuple[str, ...] = Field(alias="from", min_length=1)
    as_: Literal["text", "number", "list", "photo"] = Field(default="text", alias="as")
    truncate: int | None = Field(default=None, gt=0)
    when_missing: Literal["received_at"] | None = None

    @field_validator("sources", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class Service(_Model):
    service_code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    service_name: str
    description: str
    group: str | None = None
    keywords: tuple[str, ...] = ()
    form: str
    attributes: tuple[Attribute, ...] = ()
    # form field path (dot-separated) -> rule
    fields: dict[str, FieldRule]

    @model_validator(mode="after")
    def _sources_exist(self) -> Service:
        known = GEOREPORT_FIELDS | {f"attribute[{a.code}]" for a in self.attributes}
        for target, rule in self.fields.items():
            for source in rule.sources:
                if source not in known:
                    raise ValueError(f"fields.{target}: {source!r} is not a GeoReport field or an attribute of this service")
        return self


class Services(_Model):
    # an attribute the client sends with its own report id (FixMyStreet: fixmystreet_id): a repeat is answered with the first reference
    idempotency_attribute: str | None = None
    services: tuple[Service, ...] = ()

    def get(self, code: str) -> Service | None:
        return next((s for s in self.services if s.service_code == code), None)


def load_services(path: Path) -> Services:
    """Reads the service list; a missing file offers no services, a bad one is a ConfigError."""
    if not path.exists():
        return Services()
    try:
        return Services.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read Open311 services: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def normalise(body: Any) -> dict[str, Value]:
    """A GeoReport request as {field: text}, with attributes as {"attribute[code]": [values]}.

    Takes form fields (attribute[code]=v, attribute[code][]=v repeated) or a JSON object
    (with "attribute"/"attributes" as an object, or the same flattened keys)."""
    found: dict[str, Value] = {}
    pairs = body.items() if isinstance(body, dict) else body
    for key, value in pairs:
        if key in ("attribute", "attributes") and isinstance(value, dict):
            for code, inner in value.items():
                found[f"attribute[{code}]"] = [_text(v) for v in (inner if isinstance(inner, list) else [inner]) if v is not None]
        elif key.startswith("attribute[") and "]" in key:
            name = key[: key.index("]") + 1]
            values = value if isinstance(value, list) else [value]
            existing = found.get(name)
            found[name] = (existing if isinstance(existing, list) else []) + [_text(v) for v in values if v is not None]
        elif value is not None and value != "":  # GeoReport: an empty optional field is an absent one
            found[key] = _text(value)
    return found


def translate(service: Service, request: dict[str, Value], received_at: datetime) -> dict[str, Any]:
    """The form payload the service's field rules make from a normalised request."""
    payload: dict[str, Any] = {}
    for target, rule in service.fields.items():
        raw = next((request[s] for s in rule.sources if request.get(s) not in (None, "", [])), None)
        value = _convert(raw, rule) if raw is not None else None
        if value is None and rule.when_missing == "received_at":
            value = received_at.isoformat()
        if value is not None:
            node = payload
            *parents, leaf = target.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return payload


def _convert(raw: Value, rule: FieldRule) -> Any:
    first = raw[0] if isinstance(raw, list) else raw
    if rule.as_ == "list":
        return list(raw) if isinstance(raw, list) else [raw]
    if rule.as_ == "number":
        try:
            return float(first)
        except ValueError:
            return first  # left for the form's schema to reject, with its own message
    if rule.as_ == "photo":
        name = urlsplit(first).path.rsplit("/", 1)[-1] or "photo"
        return [{"id": name[:100], "url": first, "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream"}]
    return first[: rule.truncate] if rule.truncate else first


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def source_field(service: Service, pointer: str) -> str:
    """The GeoReport field a form error came from, so the client sees its own names."""
    path = pointer.strip("/").replace("/", ".")
    for target, rule in service.fields.items():
        if path == target or path.startswith(target + "."):
            return rule.sources[0]
    return path or "request"
