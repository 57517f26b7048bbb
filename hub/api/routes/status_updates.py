"""Back offices push what became of a record to `POST /v1/status-updates/{connector}`, signed
with the connector's shared secret; the update joins the submission's timeline.

Signature: `Hub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, the
secret named by the connector's `status_updates.secret_env` (several, space or comma separated,
while a back office changes over). A time more than 5 minutes off is refused, against replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from hub.api.body import read_body
from hub.api.deps import RuntimeDep
from hub.api.problems import problem_responses
from hub.errors import ConfigError, InvalidSignature, MalformedJson, NotFound, ValidationFailed
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import status_events as store

log = get_logger("hub.status_updates")
router = APIRouter(prefix="/v1/status-updates", tags=["status updates"])
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024


class StatusUpdate(BaseModel):
    """Which record (the back office's own reference, or the hub's), and what it has become."""

    model_config = ConfigDict(extra="forbid")

    external_reference: str | None = Field(default=None, min_length=1, max_length=255)
    reference: str | None = Field(default=None, min_length=1, max_length=32)
    status: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,63}$", description="A short status code, e.g. in_progress")
    message: str | None = Field(default=None, max_length=2000)
    occurred_at: AwareDatetime | None = None
    # the back office's id for this update, where it has one: a repeat with it is recorded once
    update_id: str | None = Field(default=None, min_length=1, max_length=128)


class RecordedStatus(BaseModel):
    reference: str
    connector: str
    external_reference: str | None
    status: str
    occurred_at: str
    recorded_at: str


def _secrets(runtime: Runtime, connector: str) -> list[bytes]:
    config = runtime.config.connectors.get(connector)
    name = config.status_updates.secret_env if config is not None and config.status_updates is not None else None
    if name is None:
        return []
    try:
        value = runtime.secrets.env(name)
    except ConfigError:
        log.warning("status_update_secret_missing", connector=connector, variable=name)
        return []
    return [s.encode() for s in value.replace(",", " ").split() if s]


def _verify(header: str | None, body: bytes, secrets: list[bytes], now: float) -> str | None:
    """None when the signature is good; else what is wrong with it (safe to tell the sender)."""
    if not header:
        return "The Hub-Signature header is missing."
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    # a few signatures at most (one per secret during a change-over): more is not a sender we know
    stamp, given = (parts.get("t") or [""])[0], (parts.get("v1") or [])[:4]
    if not stamp.isdigit() or not given:
        return "Hub-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256>."
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return f"The signature's time is more than {TOLERANCE_SECONDS} seconds from the hub's clock."
    signed = stamp.encode() + b"." + body
    expected = [hmac.new(secret, signed, hashlib.sha256).hexdigest() for secret in secrets]
    # every pair is compared, in constant time, so the time taken says nothing about the secret
    matched = [hmac.compare_digest(e.encode(), g.strip().lower().encode()) for e in expected for g in given]
    return None if any(matched) else "The signature does not match."


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"pointer": "/" + "/".join(str(p) for p in error["loc"]), "detail": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]


@router.post(
    "/{connector}",
    status_code=202,
    response_model=RecordedStatus,
    responses=problem_responses(400, 401, 404, 413, 422, 503),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": StatusUpdate.model_json_schema()}}},
        "parameters": [{"name": "Hub-Signature", "in": "header", "required": True, "schema": {"type": "string"},
                        "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">'}],
    },
)
async def push_status(
    connector: str, request: Request, runtime: RuntimeDep, hub_signature: str | None = Header(default=None, include_in_schema=False)
) -> JSONResponse:
    body = await read_body(request, MAX_BODY_BYTES)
    secrets = _secrets(runtime, connector)
    refused = _verify(hub_signature, body, secrets, time.time()) if secrets else "This connector does not take signed status updates."
    if refused is not None:
        log.info("status_update_refused", connector=connector, reason=refused)
        raise InvalidSignature(refused, headers={"WWW-Authenticate": 'HMAC realm="status-updates"'})
    try:
        update = StatusUpdate.model_validate(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}.") from None
    except ValidationError as exc:
        errors = _problems(exc)
        raise ValidationFailed(f"{len(errors)} field(s) need attention.", errors=errors) from None
    if update.external_reference is None and update.reference is None:
        errors = [{"pointer": "/external_reference", "detail": "Give external_reference (your reference) or reference (the hub's)."}]
        raise ValidationFailed("1 field(s) need attention.", errors=errors)
    recorded = await run_in_threadpool(_record, runtime, connector, update)
    return JSONResponse(recorded, status_code=202)


def _record(runtime: Runtime, connector: str, update: StatusUpdate) -> dict[str, Any]:
    target = store.find_target(runtime.engine, connector, update.external_reference, update.reference)
    if target is None:
        which = update.external_reference or update.reference
        raise NotFound(f"No record {which!r} was delivered to {connector!r}.")
    occurred = update.occurred_at.astimezone(UTC) if update.occurred_at is not None else None
    identity = ("id", update.update_id) if update.update_id else ("content", update.status, update.message, occurred)
    key = store.dedupe_key("push", connector, target.delivery_id, *identity)
    stored = store.record(runtime.engine, target, update.status, update.message, occurred or datetime.now(UTC), "push", key)
    log.info("status_update_recorded", connector=connector, reference=target.reference, status=update.status, repeat=not stored.created)
    return {
        "reference": stored.reference,
        "connector": connector,
        "external_reference": stored.external_reference,
        "status": stored.status,
        "occurred_at": stored.occurred_at.isoformat(),
        "recorded_at": stored.recorded_at.isoformat(),
    }
