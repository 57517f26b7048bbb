"""Front ends post submissions here and read their status.

A valid submission is stored with its deliveries and outbox rows in one transaction and
answered at once with a reference; delivery to the back offices happens afterwards.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hub import metrics
from hub.api.deps import BatcherDep, ClientDep, RelayDep, RuntimeDep, may_submit
from hub.api.problems import Problem, problem_responses
from hub.config.files import Client
from hub.intake.accept import receipt, store_submission
from hub.intake.bounds import bound_errors
from hub.intake.group_commit import IntakeBatcher
from hub.logs import get_logger
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store import submissions as store

log = get_logger("hub.intake")
router = APIRouter(prefix="/v1", tags=["submissions"])


class Receipt(BaseModel):
    reference: str
    status_url: str
    received_at: str


class DeliveryStatus(BaseModel):
    connector: str
    state: str
    attempts: int
    last_error: str | None
    external_reference: str | None
    next_attempt_at: str | None
    updated_at: str


class TimelineEntry(BaseModel):
    """One step of a submission's life: `received`, a delivery `delivered` or `parked`, or a
    `status` a back office reported (`source` push or poll). `at` is when the hub recorded it,
    which orders the timeline; `occurred_at` is the back office's own time for a status."""

    at: str
    event: Literal["received", "delivered", "parked", "status"]
    connector: str | None = None
    status: str | None = None
    message: str | None = None
    source: str | None = None
    external_reference: str | None = None
    occurred_at: str | None = None


class SubmissionStatus(BaseModel):
    reference: str
    form_id: str
    form_version: int
    received_at: str
    deliveries: list[DeliveryStatus]
    # in the order the hub recorded each entry
    timeline: list[TimelineEntry]


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes; a larger body is refused without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "bad-request", "Content-Length is not a number.")
        if int(declared) > limit:
            raise Problem(413, "body-too-large", f"The body is {declared} bytes; the limit is {limit} bytes.", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "body-too-large", f"The body is over the limit of {limit} bytes.", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


@router.post(
    "/forms/{form_id}/submissions",
    status_code=202,
    response_model=Receipt,
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 503),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def submit(
    form_id: str,
    request: Request,
    runtime: RuntimeDep,
    relay: RelayDep,
    client: ClientDep,
    batcher: BatcherDep,
    version: int | None = Query(default=None, ge=1, description="Form version; the newest when omitted"),
    idempotency_key: str | None = Header(default=None, max_length=255, description="Repeat a POST safely"),
) -> JSONResponse:
    # the common case (no query, a short key) is answered by hub.api.fast_intake without this
    # function's dependency solving; both end in `accept_submission`
    return await accept_submission(request, runtime, relay, batcher, client, form_id, version, idempotency_key)


async def accept_submission(
    request: Request,
    runtime: Runtime,
    relay: Relay | None,
    batcher: IntakeBatcher,
    client: Client,
    form_id: str,
    version: int | None,
    idempotency_key: str | None,
) -> JSONResponse:
    """Everything after authentication, in this order: form (404), media type (415), size (413),
    JSON (400), bounds and schema (422), then store (409 for a reused key with another body)."""
    form = runtime.forms.get(form_id, version)
    if form is None or not may_submit(runtime, client, form_id):
        what = f"form {form_id!r}" + (f" version {version}" if version else "")
        raise Problem(404, "not-found", f"There is no {what} for this client.")
    if not _is_json(request.headers.get("content-type")):
        raise Problem(415, "unsupported-media-type", "Send the submission as JSON with Content-Type: application/json.")
    body = await read_body(request, runtime.settings.max_body_bytes)
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "malformed-json", f"The body is not valid JSON: {exc}.") from None
    errors = bound_errors(payload, runtime.settings.max_depth, runtime.settings.max_string_length) or form.errors(payload)
    if errors:
        metrics.SUBMISSIONS.labels(form_id, "invalid").inc()
        # only pointers are logged: the values may be personal data
        log.info("submission_invalid", form=form_id, client=client.id, pointers=[e.pointer for e in errors])
        raise Problem(
            422,
            "validation-failed",
            f"{len(errors)} field(s) need attention.",
            errors=[e.as_dict() for e in errors],
        )
    try:
        accepted = await store_submission(
            runtime, relay, batcher, client, form, payload, hashlib.sha256(body).hexdigest(), idempotency_key, "api"
        )
    except store.IdempotencyConflict as exc:
        raise Problem(
            409, "idempotency-conflict", "This Idempotency-Key was already used with a different body.", reference=exc.reference
        ) from None
    return receipt(runtime, accepted)


@router.get("/submissions/{reference}", response_model=SubmissionStatus, responses=problem_responses(401, 404, 503))
async def submission_status(reference: str, runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    found = await run_in_threadpool(store.status, runtime.engine, client.tenant, reference)
    if found is None:
        raise Problem(404, "not-found", f"No submission {reference!r} for this client.")
    return found
