"""The hub as an Open311 GeoReport v2 endpoint, so FixMyStreet-style clients report straight into hub forms.

Each service in `config/open311/services.yaml` is a hub form; a request is translated, validated and stored like intake.
"""

from __future__ import annotations

import hashlib
import mimetypes
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import orjson
import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from hub import metrics
from hub.api.deps import BatcherDep, RelayDep, RuntimeDep, find_client, get_client_cache, may_submit
from hub.api.problems import Problem
from hub.api.routes.submissions import read_body
from hub.config.files import Client
from hub.errors import ConfigError
from hub.intake.accept import store_submission
from hub.logs import get_logger
from hub.store import submissions as store

log = get_logger("hub.open311")
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


def errors(status: int, *descriptions: str) -> JSONResponse:
    """GeoReport's error list; the HTTP status is 403 for the api_key, 404 for unknown things, else 400."""
    return JSONResponse([{"code": status, "description": d} for d in descriptions], status_code=status)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring each status as GeoReport's error list."""
    meaning = {400: "The request is not valid", 403: "The api_key is not known", 404: "Not found", 413: "The body is too large"}
    error = {"type": "object", "required": ["code", "description"], "properties": {"code": {"type": "integer"}, "description": {"type": "string"}}}
    schema = {"type": "array", "items": error}
    return {s: {"description": meaning[s], "content": {"application/json": {"schema": schema}}} for s in statuses}


# GeoReport's create_request fields, all text; attributes arrive as `attribute[code]` (or `attribute[code][]`)
_REQUEST_SCHEMA = {
    "type": "object", "required": ["api_key", "service_code"],
    "properties": {name: {"type": "string"} for name in ("api_key", "service_code", *sorted(GEOREPORT_FIELDS - {"device_id", "account_id"}))},
    "additionalProperties": {"description": "attribute[code]: a service attribute's value", "type": "string"},
}
_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": _REQUEST_SCHEMA}, "application/json": {"schema": _REQUEST_SCHEMA}}}}


def create_router(services_file: Path) -> APIRouter:
    """The /open311/v2 endpoints for the services in `services_file` (read once, here)."""
    offered = load_services(services_file)
    router = APIRouter(prefix="/open311/v2", tags=["open311"])

    @router.get("/services.json")
    async def service_list() -> list[dict[str, Any]]:
        return [
            {
                "service_code": s.service_code, "service_name": s.service_name, "description": s.description,
                "metadata": bool(s.attributes), "type": "realtime",
                "keywords": ", ".join(s.keywords) or None, "group": s.group,
            }
            for s in offered.services
        ]

    @router.get("/services/{code}.json", response_model=None, responses=error_responses(404))
    async def service_definition(code: str) -> JSONResponse | dict[str, Any]:
        service = offered.get(code)
        if service is None:
            return errors(404, f"service_code {code} was not found")
        attributes = [
            {
                "variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
                "datatype_description": None, "order": order, "description": a.description,
                **({"values": [{"key": k, "name": n} for k, n in a.values.items()]} if a.values else {}),
            }
            for order, a in enumerate(service.attributes, start=1)
        ]
        return {"service_code": service.service_code, "attributes": attributes}

    @router.post("/requests.json", responses=error_responses(400, 403, 404, 413), openapi_extra=_REQUEST_BODY)
    async def create_request(request: Request, runtime: RuntimeDep, relay: RelayDep, batcher: BatcherDep) -> JSONResponse:
        try:
            body = await read_body(request, runtime.settings.max_body_bytes)
        except Problem as exc:
            return errors(exc.status if exc.status == 413 else 400, exc.detail)
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media == "application/json":
                parsed = orjson.loads(body)
                if not isinstance(parsed, dict):
                    return errors(400, "Send the service request as a JSON object")
                fields = normalise(parsed)
            else:  # GeoReport's own format; some clients omit the content type
                fields = normalise(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return errors(400, "The body is neither form fields nor JSON")
        key = fields.pop("api_key", None)
        client, refusal = _client_for(runtime, request, key)
        if client is None:
            return errors(403, refusal or "Invalid api_key received -- can't proceed with create_request.")
        code = fields.get("service_code")
        if not isinstance(code, str):
            return errors(400, "service_code was not provided")
        service = offered.get(code)
        form = runtime.forms.get(service.form) if service is not None else None
        if service is None or form is None or not may_submit(runtime, client, service.form):
            return errors(404, f"service_code {code} was not found")
        if not (("lat" in fields and "long" in fields) or "address_string" in fields or "address_id" in fields):
            return errors(400, "A full location parameter must be submitted: lat and long, address_string or address_id")
        payload = translate(service, fields, datetime.now(UTC))
        if problems := form.errors(payload):
            metrics.SUBMISSIONS.labels(form.form_id, "invalid").inc()
            log.info("open311_request_invalid", form=form.form_id, client=client.id, pointers=[e.pointer for e in problems])
            return errors(400, *(f"{_source(service, e.pointer)}: {e.message}" for e in problems))
        repeat_of = fields.get(f"attribute[{offered.idempotency_attribute}]") if offered.idempotency_attribute else None
        idempotency_key = f"open311:{code}:{repeat_of[0]}" if isinstance(repeat_of, list) and repeat_of else None
        body_sha256 = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
        try:
            accepted = await store_submission(runtime, relay, batcher, client, form, payload, body_sha256, idempotency_key, "open311")
            reference = accepted.reference
        except store.IdempotencyConflict as exc:  # the same report sent again, edited: keep the first
            reference = exc.reference
        return JSONResponse([{"service_request_id": reference}])

    @router.get("/requests/{reference}.json", responses=error_responses(403, 404))
    async def get_request(
        reference: str, request: Request, runtime: RuntimeDep, key: str | None = Query(None, alias="api_key")
    ) -> JSONResponse:
        if key is not None:
            client, refusal = _client_for(runtime, request, key)
            if client is None:
                return errors(403, refusal or "Invalid api_key received")
            tenants = [client.tenant]
        else:  # GeoReport needs no key to read a request: find its tenant by the reference's prefix
            prefix = reference.split("-", 1)[0]
            tenants = [t.id for t in runtime.config.tenants.values() if t.reference_prefix == prefix]
        for tenant in tenants:
            found = await run_in_threadpool(store.status, runtime.engine, tenant, reference)
            if found is not None:
                return JSONResponse([_as_request(found, offered)])
        return errors(404, f"service_request_id {reference} was not found")

    return router


def _source(service: Service, pointer: str) -> str:
    """The GeoReport field a form error came from, so the client sees its own names."""
    path = pointer.strip("/").replace("/", ".")
    for target, rule in service.fields.items():
        if path == target or path.startswith(target + "."):
            return rule.sources[0]
    return path or "request"


def _as_request(status: dict[str, Any], offered: Services) -> dict[str, Any]:
    """A hub submission as a GeoReport service request: closed once every back office has it.

    Nothing personal is shown: GeoReport reads need no key, so the description stays out."""
    service = next((s for s in offered.services if s.form == status["form_id"]), None)
    deliveries = status["deliveries"]
    delivered = sorted(d["connector"] for d in deliveries if d["state"] == "delivered")
    closed = bool(deliveries) and len(delivered) == len(deliveries)
    waiting = sorted(d["connector"] for d in deliveries if d["state"] != "delivered")
    notes = f"Passed to {', '.join(delivered)}." if closed else (
        f"Waiting to reach {', '.join(waiting)}." if waiting else "Received; not routed to a back office yet."
    )
    updated = max((d["updated_at"] for d in deliveries), default=status["received_at"])
    return {
        "service_request_id": status["reference"],
        "status": "closed" if closed else "open",
        "status_notes": notes,
        "service_name": service.service_name if service else status["form_id"],
        "service_code": service.service_code if service else status["form_id"],
        "agency_responsible": ", ".join(d["connector"] for d in deliveries) or None,
        "service_notice": None,
        "requested_datetime": status["received_at"],
        "updated_datetime": updated,
    }


def _client_for(runtime: RuntimeDep, request: Request, key: object) -> tuple[Client | None, str | None]:
    """The client behind a GeoReport `api_key` (from the config files or made by `hub clients
    create`), or None and, for a revoked or expired key, the reason in GeoReport's words."""
    if not isinstance(key, str) or not key:
        return None, None
    try:
        return find_client(runtime, get_client_cache(request), key), None
    except Problem as problem:
        return None, problem.detail
