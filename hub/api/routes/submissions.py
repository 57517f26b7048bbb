"""Front ends post submissions here and read their status.

A valid submission is stored with its deliveries and outbox rows in one transaction and
answered at once with a reference; delivery to the back offices happens afterwards.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hub.api.body import is_json, media_type, parse_json, read_body, sha256
from hub.api.deps import ClientDep, IntakeDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.api.routes.attachments import attachment_store, scanner, store_file
from hub.attachments import inline
from hub.attachments.storage import BlobStore
from hub.config.files import Client
from hub.errors import NotFound, UnsupportedMediaType, ValidationFailed
from hub.intake.accept import Intake, Submission
from hub.intake.forms import Form
from hub.privacy.retention import delete_blobs
from hub.runtime import Runtime
from hub.store import attachments as attachment_rows
from hub.store import notifications
from hub.store import submissions as store
from hub.store.payments import PaidAccepted

router = APIRouter(prefix="/v1", tags=["submissions"])


class PaymentStatus(BaseModel):
    """A paid form's payment: GOV.UK Pay's `next_url` while it is open (send the resident there)."""

    state: str
    amount_pence: int
    payment_id: str | None
    next_url: str | None
    finished_at: str | None


class Receipt(BaseModel):
    reference: str
    status_url: str
    received_at: str
    # paid forms only (docs/payments.md): awaiting_payment or payment_unavailable, and the payment
    status: str | None = None
    payment: PaymentStatus | None = None


class DeliveryStatus(BaseModel):
    connector: str
    state: str
    attempts: int
    last_error: str | None
    external_reference: str | None
    next_attempt_at: str | None
    updated_at: str
    # why a pending delivery is held back, while it is: "virus scan" (a file of the submission has
    # not been scanned yet, HUB_CLAMD_SOCKET did not answer); None once it is free to go
    waiting: Literal["virus scan"] | None = None
    waiting_reason: str | None = None


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


class NotificationStatus(BaseModel):
    kind: Literal["acknowledgement", "closed"]
    state: Literal["pending", "retrying", "sent", "failed"]
    channel: str | None
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    updated_at: str


class SubmissionStatus(BaseModel):
    reference: str
    # paid forms only: awaiting_payment, payment_unavailable (retried), paid, or cancelled
    status: str | None = None
    payment: PaymentStatus | None = None
    form_id: str
    form_version: int
    received_at: str
    deliveries: list[DeliveryStatus]
    # in the order the hub recorded each entry
    timeline: list[TimelineEntry]
    # the resident's messages through GOV.UK Notify (docs/notifications.md), where any are configured
    notifications: list[NotificationStatus] = []


@router.post(
    "/forms/{form_id}/submissions",
    status_code=202,
    response_model=Receipt,
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["submission"],
            "description": "For a form with attachment fields: the answers and small files in one request "
                           "(at most HUB_ATTACHMENT_INLINE_MAX_BYTES in all); each file part is named after its field",
            "properties": {"submission": {"type": "string", "description": "The answers as JSON"}},
            "additionalProperties": {"type": "array", "items": {"type": "string", "format": "binary"}},
        }},
    }}},
)
async def submit(
    form_id: str,
    request: Request,
    intake: IntakeDep,
    client: ClientDep,
    version: int | None = Query(default=None, ge=1, description="Form version; the newest when omitted"),
    idempotency_key: str | None = Header(default=None, max_length=255, description="Repeat a POST safely"),
    resident_subject: str | None = Header(
        default=None, description="The signed-in resident's `sub` at the portal's identity provider: links the "
        "submission to their account (GET /v1/residents/{subject}/...)"),
) -> JSONResponse:
    # the common case (no query, a short key) is answered by hub.api.fast_intake without this
    # function's dependency solving; both end in `accept_submission`
    return await accept_submission(request, intake, client, form_id, version, idempotency_key)


async def accept_submission(
    request: Request, intake: Intake, client: Client, form_id: str, version: int | None, idempotency_key: str | None
) -> JSONResponse:
    """Everything after authentication, in this order: form (404), media type (415), size (413),
    JSON (400), then intake's bounds and schema (422) and store (409 for a reused key with another body)."""
    form = intake.form_for(client, form_id, version)
    media = media_type(request)
    if media == "multipart/form-data" and form.attachment_fields:
        return await accept_with_files(request, intake, client, form, idempotency_key)
    if not is_json(media):
        raise UnsupportedMediaType("Send the submission as JSON with Content-Type: application/json"
                                   + (", or with its files as multipart/form-data." if form.attachment_fields else "."))
    resident = signed_in_resident(request)
    with intake.admitted():
        body = await read_body(request, intake.runtime.settings.max_body_bytes)
        accepted = await intake.accept(Submission(client, form, parse_json(body), sha256(body), idempotency_key, "api", resident))
    return receipt(intake.runtime, accepted)


async def accept_with_files(request: Request, intake: Intake, client: Client, form: Form, idempotency_key: str | None) -> JSONResponse:
    """The answers and small files in one multipart request (hub/attachments/inline.py): each file
    is stored as POST /v1/attachments would, then the submission names their ids."""
    runtime = intake.runtime
    resident = signed_in_resident(request)
    with intake.admitted():
        body = await read_body(request, runtime.settings.attachment_inline_max_bytes)
        parsed = inline.parse(request.headers.get("content-type", ""), body, form.attachment_fields)
        blobs, scan_with = attachment_store(request, runtime), scanner(request, runtime)

        def store_all() -> list[tuple[inline.InlineFile, str]]:
            done: list[tuple[inline.InlineFile, str]] = []
            try:
                for f in parsed.files:
                    done.append((f, store_file(runtime, client, f.name, iter([f.data]), f.field.rules, blobs, scan_with).id))
            except BaseException:  # one file refused (quarantined, wrong type): the ones stored before it go too
                forget_inline(runtime, blobs, [attachment_id for _, attachment_id in done])
                raise
            return done

        stored = await run_in_threadpool(store_all)
        names = {attachment_id: f.name for f, attachment_id in stored}
        submission = Submission(client, form, inline.with_ids(parsed.payload, stored), parsed.body_sha256,
                                idempotency_key, "api", resident, file_names=names)
        # files of a refused request, or of a repeat answered with the first submission, are named
        # by no submission: they go now (the unlinked maximum age would take them anyway); a new
        # submission links them all, so it costs no second transaction
        try:
            accepted = await intake.accept(submission)
        except BaseException:
            await run_in_threadpool(forget_inline, runtime, blobs, list(names))
            raise
        if not accepted.created:
            await run_in_threadpool(forget_inline, runtime, blobs, list(names))
    return receipt(runtime, accepted)


def forget_inline(runtime: Runtime, blobs: BlobStore, ids: list[str]) -> None:
    if not ids:
        return
    with runtime.engine.begin() as conn:
        _, shas = attachment_rows.forget_unlinked(conn, ids=ids)
    delete_blobs(runtime.engine, blobs, shas)


RESIDENT_HEADER = "resident-subject"


def signed_in_resident(request: Request) -> str | None:
    """The portal's signed-in resident (`sub` of its identity provider), if it sent one: up to 255
    visible ASCII characters, as OIDC issues them; anything else is a 422 naming the header."""
    value = request.headers.get(RESIDENT_HEADER)
    if value is None:
        return None
    if not re.fullmatch(r"[\x21-\x7e]{1,255}", value):
        raise ValidationFailed("The Resident-Subject header is not valid.", errors=[{
            "pointer": "/headers/resident-subject",
            "detail": "Send the resident's subject from your identity provider: 1 to 255 visible ASCII characters.",
        }])
    return value


def receipt(runtime: Runtime, accepted: store.Accepted) -> JSONResponse:
    """The 202 answer every front end gets: the reference and where to follow it."""
    status_url = f"{runtime.settings.public_url.rstrip('/')}/v1/submissions/{accepted.reference}"
    body: dict[str, Any] = {"reference": accepted.reference, "status_url": status_url, "received_at": accepted.received_at.isoformat()}
    if isinstance(accepted, PaidAccepted) and accepted.payment is not None:
        body |= accepted.payment
    return JSONResponse(body, status_code=202, headers={"Location": status_url})


@router.get("/submissions/{reference}", response_model=SubmissionStatus, responses=problem_responses(401, 404, 429, 503))
async def submission_status(reference: str, runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    found = await run_in_threadpool(store.status, runtime.engine, client.tenant, reference, bool(runtime.settings.clamd_socket))
    if found is None:
        raise NotFound(f"No submission {reference!r} for this client.")
    found["notifications"] = await run_in_threadpool(notifications.for_submission, runtime.engine, client.tenant, reference)
    return found
