"""The hub as an Open311 GeoReport v2 endpoint, so FixMyStreet-style clients report straight into hub forms.

Each service in `config/open311/services.yaml` is a hub form; a request is translated, validated and stored like intake.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.api.body import read_body
from hub.api.deps import IntakeDep, RuntimeDep, find_client, get_client_cache, get_limits, source_address
from hub.api.problems import problem_responses
from hub.config.files import Client
from hub.errors import IdempotencyConflict, NotFound, RequestError, ValidationFailed
from hub.intake.accept import Submission
from hub.intake.georeport_services import GEOREPORT_FIELDS, Services, load_services, normalise, source_field, translate
from hub.store import submissions as store


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

    @router.post("/requests.json", responses={**error_responses(400, 403, 404, 413), **problem_responses(429, 503)}, openapi_extra=_REQUEST_BODY)
    async def create_request(request: Request, intake: IntakeDep) -> JSONResponse:
        runtime = intake.runtime
        try:
            body = await read_body(request, runtime.settings.max_body_bytes)
        except RequestError as exc:
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
        try:
            if service is None:
                raise NotFound(code)
            form = intake.form_for(client, service.form)
        except NotFound:
            return errors(404, f"service_code {code} was not found")
        if not (("lat" in fields and "long" in fields) or "address_string" in fields or "address_id" in fields):
            return errors(400, "A full location parameter must be submitted: lat and long, address_string or address_id")
        payload = translate(service, fields, datetime.now(UTC))
        repeat_of = fields.get(f"attribute[{offered.idempotency_attribute}]") if offered.idempotency_attribute else None
        idempotency_key = f"open311:{code}:{repeat_of[0]}" if isinstance(repeat_of, list) and repeat_of else None
        body_sha256 = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
        try:
            with intake.admitted():  # a flood is a 503 problem with Retry-After, as on /v1
                accepted = await intake.accept(Submission(client, form, payload, body_sha256, idempotency_key, "open311"))
            reference = accepted.reference
        except ValidationFailed as invalid:
            # in GeoReport's terms: the client's own field names, not the form's pointers
            return errors(400, *(f"{source_field(service, e['pointer'])}: {e['detail']}" for e in invalid.errors or []))
        except IdempotencyConflict as exc:  # the same report sent again, edited: keep the first
            reference = exc.reference
        return JSONResponse([{"service_request_id": reference}])

    @router.get("/requests/{reference}.json", responses={**error_responses(403, 404), **problem_responses(429)})
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
    rate_limits, address = get_limits(request), source_address(request)
    # over a limit is the hub's 429 problem (Retry-After, RateLimit-*): GeoReport has no word for it
    rate_limits.check_source(address)
    try:
        client = find_client(runtime, get_client_cache(request), key)
    except RequestError as problem:
        rate_limits.failed(address)
        return None, problem.detail
    if client is None:
        rate_limits.failed(address)
        return None, None
    rate_limits.check_client(client)
    return client, None
