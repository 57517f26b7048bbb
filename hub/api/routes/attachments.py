"""Uploading a resident's file before the submission that names it: `POST /v1/attachments`.

The body is the file's bytes, streamed into the attachment store (never read whole) under
HUB_ATTACHMENT_MAX_BYTES; its type is sniffed from the bytes, images are cleaned of their
metadata, and clamd scans it (hub.attachments.receive). The answer's `id` is what a submission
names later. An infected file is not kept; a scanner that does not answer leaves it `unscanned`.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from itertools import chain
from typing import Annotated

import anyio.from_thread
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ClientDep, IntakeDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.attachments.delivery import extension
from hub.attachments.inspect import AttachmentRules, refuse
from hub.attachments.receive import Scanner, receive
from hub.attachments.scan import Clamd, Clean, Infected, Unscanned, Verdict
from hub.attachments.storage import BlobStore
from hub.config.files import Client
from hub.errors import BodyTooLarge, NotFound, ValidationFailed
from hub.intake.accept import Intake
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import attachments as store

router = APIRouter(prefix="/v1/attachments", tags=["attachments"])
log = get_logger("hub.attachments")

ID_PREFIX = "att_"
_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 24  # about 143 random bits
ID_PATTERN = rf"^{ID_PREFIX}[A-Za-z0-9]{{{ID_LENGTH}}}$"
MAX_NAME = 255
# a name only: no path separators, no control characters
_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")
_GONE = "No attachment with this id for this client."


class AttachmentOut(BaseModel):
    id: str
    size: int
    media_type: str
    sha256: str
    # "clean", or "unscanned" when the virus scanner did not answer (scanned again later)
    scan: str
    created_at: datetime
    # whether the photo's GPS position was kept (sealed, for the back offices' mappings): only when
    # the upload named a form field that sets keep_location and the photo had one; never the position
    location_kept: bool = False


def new_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


class NoScanner:
    """No clamd configured (HUB_CLAMD_SOCKET unset): every file is `unscanned`."""

    def scan(self, chunks: Iterable[bytes]) -> Verdict:
        return Unscanned("no scanner configured (HUB_CLAMD_SOCKET)")


def attachment_store(request: Request, runtime: Runtime) -> BlobStore:
    """The app's store (a test or an operator's S3Store may set `app.state.attachment_store`), else
    the runtime's FileStore under HUB_DATA_DIR."""
    found: BlobStore | None = getattr(request.app.state, "attachment_store", None)
    return found if found is not None else runtime.attachment_store


def scanner(request: Request, runtime: Runtime) -> Scanner:
    found: Scanner | None = getattr(request.app.state, "attachment_scanner", None)
    if found is not None:
        return found
    socket_path = runtime.settings.clamd_socket
    return Clamd(socket_path, runtime.settings.clamd_timeout_seconds) if socket_path else NoScanner()


def disposition_name(header: str) -> str | None:
    """`filename*` (RFC 6266/5987, UTF-8) or `filename` of a Content-Disposition header."""
    message = Message()
    message["Content-Disposition"] = header
    name = message.get_filename()
    return name if isinstance(name, str) else None


def file_name(x_filename: str | None, disposition: str | None, query: str | None) -> str:
    """The file's name as the resident gave it, checked to be a name and never used as a path."""
    for pointer, given in (("/headers/X-Filename", x_filename),
                           ("/headers/Content-Disposition", disposition_name(disposition) if disposition else None),
                           ("/query/filename", query)):
        if given is None:
            continue
        if not _NAME.match(given) or given in (".", "..") or given != given.strip():
            detail = f"a file name of 1 to {MAX_NAME} characters, without '/', '\\' or control characters"
            raise ValidationFailed("The file name is not valid.", errors=[{"pointer": pointer, "detail": detail}])
        return given
    detail = "name the file: an X-Filename or Content-Disposition header, or the filename query parameter"
    raise ValidationFailed("The file has no name.", errors=[{"pointer": "/headers/X-Filename", "detail": detail}])


def blocking_chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body's chunks for code in a worker thread, each awaited on the event loop, so
    the body is read only as fast as it is stored and never held whole."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


def verdict_state(verdict: Verdict) -> str:
    return "clean" if isinstance(verdict, Clean) else "unscanned"


def field_rules(intake: Intake, client: Client, form_id: str | None, field_name: str | None) -> AttachmentRules | None:
    """The rules of the form field the upload is for (`?form=&field=`), or None when neither is
    given; an unknown form is a 404, a field that is not one of its attachment fields a 422."""
    if form_id is None and field_name is None:
        return None
    if form_id is None:
        raise ValidationFailed("The upload names a field but no form.", errors=[
            {"pointer": "/query/form", "detail": "name the form whose field this file is for (form=<form id>), or neither"}])
    form = intake.form_for(client, form_id)
    known = {f.name: f for f in form.attachment_fields}
    if field_name is None or field_name not in known:
        listed = ", ".join(sorted(known)) or "none"
        said = (f"The upload names form {form_id!r} but no field: give the query parameter 'field'." if field_name is None
                else f"The query parameter 'field' names {field_name!r}, which is not an attachment field of form {form_id!r}.")
        raise ValidationFailed(said, errors=[
            {"pointer": "/query/field", "detail": f"name one of the form's attachment fields (it has: {listed})"}])
    return known[field_name].rules


@router.post(
    "", status_code=201, response_model=AttachmentOut, responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
    openapi_extra={"requestBody": {"required": True, "description": "The file's bytes",
                                   "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def upload(
    request: Request,
    runtime: RuntimeDep,
    intake: IntakeDep,
    client: ClientDep,
    x_filename: Annotated[str | None, Header(max_length=MAX_NAME, description="The file's name (or use Content-Disposition)")] = None,
    content_disposition: Annotated[str | None, Header(max_length=2 * MAX_NAME + 64, description="attachment; filename=\"...\"")] = None,
    filename: Annotated[str | None, Query(max_length=MAX_NAME, description="The file's name, when no header names it")] = None,
    form: Annotated[str | None, Query(max_length=200, description=(
        "The form the file is for: with `field`, that field's rules apply (types, size, keep_location); "
        "an unknown form is a 404"))] = None,
    field: Annotated[str | None, Query(max_length=200, description=(
        "The form's attachment field (\"x-attachment\": true) the file is for; another name is a 422"))] = None,
) -> AttachmentOut:
    # a bad name and a bad field are both named in one problem
    failed: list[ValidationFailed] = []
    name, chosen = "", None
    try:
        name = file_name(x_filename, content_disposition, filename)
    except ValidationFailed as problem:
        failed.append(problem)
    try:
        chosen = field_rules(intake, client, form, field)
    except ValidationFailed as problem:
        failed.append(problem)
    if failed:
        detail = failed[0].detail if len(failed) == 1 else "The file's name and the form field it is for are not valid."
        raise ValidationFailed(detail, errors=[e for problem in failed for e in problem.errors or []])
    limit = runtime.settings.attachment_max_bytes if chosen is None else min(runtime.settings.attachment_max_bytes, chosen.max_file_bytes)
    taker = "the hub takes" if chosen is None else f"the field {field!r} of form {form!r} takes"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The file {name!r} is larger than {taker} ({limit} bytes).", limit=limit)
    blobs, scan_with = attachment_store(request, runtime), scanner(request, runtime)
    # without a form field: the hub's default types, and no location kept
    rules = AttachmentRules(max_file_bytes=limit) if chosen is None else replace(chosen, max_file_bytes=limit)
    body = request.stream()

    def store_it() -> AttachmentOut:
        chunks = blocking_chunks(body)
        first = next(chunks, None)
        if first is None:
            raise refuse(name, "the file is empty")
        try:
            return shown(store_file(runtime, client, name, chain([first], chunks), rules, blobs, scan_with))
        except BodyTooLarge:
            raise BodyTooLarge(f"The file {name!r} is larger than {taker} ({limit} bytes).", limit=limit) from None

    return await run_in_threadpool(store_it)


def store_file(runtime: Runtime, client: Client, name: str, chunks: Iterable[bytes], rules: AttachmentRules,
               blobs: BlobStore, scan_with: Scanner) -> store.Attachment:
    """Stores one file as the client's attachment (received, sniffed, cleaned, scanned); an
    infected one is not kept and is a 422 naming it. Called from a worker thread."""
    got = receive(name, chunks, rules, blobs, scan_with)
    if isinstance(got.verdict, Infected):
        with runtime.engine.connect() as conn:
            named = store.blob_named(conn, got.sha256)
        if not named:
            blobs.delete(got.sha256)
        log.warning("attachment_quarantined", tenant=client.tenant, client=client.id, sha256=got.sha256,
                    signature=got.verdict.signature)
        raise ValidationFailed(
            f"The file {name!r} was quarantined: the virus scanner found {got.verdict.signature}.",
            errors=[{"pointer": f"/files/{name}", "detail": "quarantined: the virus scanner found something in it"}],
        )
    if isinstance(got.verdict, Unscanned):
        log.warning("attachment_unscanned", tenant=client.tenant, client=client.id, reason=got.verdict.reason)
    # the position is personal data: sealed like a payload, and never logged
    location = None if got.location is None else runtime.sealer.seal({"lat": got.location[0], "long": got.location[1]})
    row = store.Attachment(new_id(), client.tenant, client.id, got.sha256, got.media_type, got.size,
                           verdict_state(got.verdict), datetime.now(UTC), location)
    with runtime.engine.begin() as conn:
        store.add(conn, row)
    return row


def shown(row: store.Attachment) -> AttachmentOut:
    return AttachmentOut(id=row.id, size=row.size, media_type=row.media_type, sha256=row.sha256, scan=row.scan,
                         created_at=row.created_at, location_kept=row.location is not None)


@router.get("/{attachment_id}", response_model=AttachmentOut, responses=problem_responses(401, 404, 422, 429, 503))
async def metadata(
    attachment_id: Annotated[str, Path(max_length=64, description="The id POST /v1/attachments answered")],
    runtime: RuntimeDep,
    client: ClientDep,
) -> AttachmentOut:
    if not re.match(ID_PATTERN, attachment_id):
        raise NotFound(_GONE)

    def read() -> store.Attachment | None:
        with runtime.engine.connect() as conn:
            return store.get(conn, client.tenant, attachment_id)

    found = await run_in_threadpool(read)
    if found is None:
        raise NotFound(_GONE)
    return shown(found)


@router.get(
    "/{attachment_id}/content", responses=problem_responses(403, 404, 410, 422),
    response_class=StreamingResponse,
    openapi_extra={"responses": {"200": {"description": "The file's bytes (cleaned of metadata)",
                                         "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}},
)
async def content(
    request: Request,
    attachment_id: Annotated[str, Path(max_length=64, description="The attachment's id")],
    runtime: RuntimeDep,
    expires: Annotated[int, Query(ge=0, le=2**40, description="Unix time the link stops working, as signed")],
    signature: Annotated[str, Query(min_length=64, max_length=64, pattern="^[0-9a-fA-F]{64}$", description="The hub's HMAC of id and expiry")],
) -> StreamingResponse:
    """The file's bytes for a back office holding a link the hub signed (Open311 `media_url`):
    no API key; a link not signed by the hub is a 403, one past its expiry a 410."""
    runtime.attachment_links.check(attachment_id, expires, signature)

    def read() -> store.Attachment | None:
        with runtime.engine.connect() as conn:
            return store.by_id(conn, attachment_id)

    found = await run_in_threadpool(read)
    if found is None or found.scan == store.QUARANTINED or (found.scan == store.UNSCANNED and runtime.settings.clamd_socket):
        # (a delivery waits for the scan, so a link is only ever given out for a scanned file)
        raise NotFound("This attachment is not available.")
    blobs = attachment_store(request, runtime)
    if not blobs.exists(found.sha256):
        raise NotFound("This attachment is not available.")
    name = f"{found.id}.{extension(found.media_type)}"
    headers = {"Content-Length": str(found.size), "Content-Disposition": f'attachment; filename="{name}"',
               "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    return StreamingResponse(blobs.open(found.sha256), media_type=found.media_type, headers=headers)
