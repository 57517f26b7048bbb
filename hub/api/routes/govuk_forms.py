"""GOV.UK Forms submissions: the JSON forms-runner sends, checked against GOV.UK's own schema, stored like intake.

A GOV.UK form id picks the hub form (`config/govuk/forms.yaml`, else `govuk-<form id>`), which picks the routes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.api.body import media_type, parse_json, read_body, sha256
from hub.api.deps import ClientDep, IntakeDep
from hub.api.problems import problem_responses
from hub.api.routes.submissions import Receipt, receipt
from hub.config.bundled import standards_path
from hub.errors import ConfigError, SchemaError, ServiceUnavailable, UnsupportedMediaType, ValidationFailed
from hub.intake.accept import Submission
from hub.intake.forms import Form, compile_form
from hub.logs import get_logger

log = get_logger("hub.govuk")
# GOV.UK's published contract, shipped in standards/ (or a council's copy in HUB_STANDARDS_DIR)
SUBMISSION_SCHEMA = "standards:///govuk-forms/json_submission_schema_v1.json"
_FORM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class GovukForms(BaseModel):
    """GOV.UK form id -> hub form id; ids not listed go to `govuk-<id>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: dict[str, str] = {}

    def hub_form(self, govuk_form_id: str) -> str:
        return self.forms.get(govuk_form_id, f"govuk-{govuk_form_id}")


def load_forms_map(path: Path) -> GovukForms:
    if not path.exists():
        return GovukForms()
    try:
        return GovukForms.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: cannot read the GOV.UK Forms map: {exc}") from None


BOUNDED_VALUE = "GovukAnswerValue"
_NO_NUL = "^[^\\u0000]*$"
_SUBSCHEMAS = ("items", "anyOf", "oneOf", "allOf", "additionalProperties")


def bounded_value(max_string_length: int) -> dict[str, Any]:
    """Any JSON value the intake bounds let through (no NUL, strings and field names no longer than
    the limit), as a components schema: GOV.UK's schema leaves an answer's extra fields open."""
    ref = {"$ref": f"#/components/schemas/{BOUNDED_VALUE}"}
    return {"anyOf": [
        {"type": "string", "pattern": _NO_NUL, "maxLength": max_string_length},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": ref},
        {"type": "object", "propertyNames": {"pattern": _NO_NUL, "maxLength": max_string_length}, "additionalProperties": ref},
    ]}


def _with_bounds(node: Any, max_string_length: int) -> Any:
    """The intake's bounds written into a schema, so the document says what the hub accepts:
    strings and field names without NUL and within the length limit, open objects' extra fields
    bounded values. (The nesting limit is not written: JSON Schema has no keyword for it.)"""
    if isinstance(node, list):
        return [_with_bounds(item, max_string_length) for item in node]
    if not isinstance(node, dict):
        return node
    bounded = {key: _with_bounds(value, max_string_length) if key in _SUBSCHEMAS else value for key, value in node.items()}
    if isinstance(node.get("properties"), dict):
        bounded["properties"] = {name: _with_bounds(value, max_string_length) for name, value in node["properties"].items()}
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "pattern" not in node:
        bounded["pattern"] = _NO_NUL
        bounded.setdefault("maxLength", max_string_length)
    if "object" in types:
        bounded.setdefault("propertyNames", {"pattern": _NO_NUL, "maxLength": max_string_length})
        bounded.setdefault("additionalProperties", {"$ref": f"#/components/schemas/{BOUNDED_VALUE}"})
    return bounded


def request_schema(schema_path: Path, max_string_length: int = 100_000) -> dict[str, Any]:
    """GOV.UK's schema as an OpenAPI request body schema: its `$defs` inlined, the `form_id`
    the hub needs to pick a form, and the intake's bounds; `{"type": "object"}` when the schema
    cannot be read."""
    try:
        published = orjson.loads(schema_path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {"type": "object"}
    if not isinstance(published, dict):
        return {"type": "object"}
    defs = published.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
            return {**inline(defs[ref[8:]]), **{k: inline(v) for k, v in node.items() if k != "$ref"}}
        return {k: inline(v) for k, v in node.items()}

    schema: dict[str, Any] = {k: inline(v) for k, v in published.items() if k not in ("$schema", "$id")}
    schema["properties"] = {**schema.get("properties", {}), "form_id": {
        "type": "string", "pattern": _FORM_ID.pattern, "description": "The GOV.UK form's id; it picks the hub form."}}
    schema["required"] = sorted({*schema.get("required", []), "form_id"})
    bounded: dict[str, Any] = _with_bounds(schema, max_string_length)
    return bounded


def create_router(forms_file: Path, standards_dir: Path | None = None, max_string_length: int = 100_000) -> APIRouter:
    """The GOV.UK Forms endpoint; the form map and GOV.UK's schema are read once, here."""
    forms_map = load_forms_map(forms_file)
    schema_path = standards_path(SUBMISSION_SCHEMA, standards_dir)
    contract: Form | None
    try:
        contract = compile_form("govuk-json-submission", 1, schema_path)
    except SchemaError as exc:
        # the rest of the hub must still start; this endpoint answers 503 until the schema is there
        log.error("govuk_schema_unavailable", error=str(exc))
        contract = None
    body_schema = request_schema(schema_path, max_string_length)
    router = APIRouter(prefix="/v1/govuk-forms", tags=["GOV.UK Forms"])

    @router.post(
        "/submissions",
        status_code=202,
        response_model=Receipt,
        responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 429, 503),
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    async def submit(
        request: Request,
        intake: IntakeDep,
        client: ClientDep,
        idempotency_key: str | None = Header(default=None, max_length=255, description="Repeat a POST safely"),
    ) -> JSONResponse:
        if contract is None:
            raise ServiceUnavailable("GOV.UK Forms submissions cannot be checked: their schema is missing.")
        if media_type(request) != "application/json":
            raise UnsupportedMediaType("Send the GOV.UK Forms submission as JSON with Content-Type: application/json.")
        body = await read_body(request, intake.runtime.settings.max_body_bytes)
        payload = parse_json(body)
        # GOV.UK's own contract first: a body that is no GOV.UK submission is told so in those terms
        if problems := intake.problems(contract, payload):
            raise ValidationFailed(f"This is not a GOV.UK Forms JSON submission (version 1). {len(problems)} field(s) need attention.",
                                   errors=[e.as_dict() for e in problems])
        govuk_id = payload.get("form_id")
        if not isinstance(govuk_id, str) or not _FORM_ID.match(govuk_id):
            raise ValidationFailed("The submission has no GOV.UK form id.",
                                   errors=[{"pointer": "/form_id", "detail": "form_id is required: forms-runner sends the form's id"}])
        form = intake.form_for(client, forms_map.hub_form(govuk_id), what=f"hub form for GOV.UK form {govuk_id}")
        # forms-runner gives every submission its own reference: a resend of it is a repeat
        reference = payload.get("submission_reference")
        key = idempotency_key or (f"govuk:{reference}" if isinstance(reference, str) and reference else None)
        with intake.admitted():
            accepted = await intake.accept(Submission(client, form, payload, sha256(body), key, "govuk-forms"))
        return receipt(intake.runtime, accepted)

    return router
