"""The portal's account pages for a signed-in resident: pre-fill for a form, and "my requests".

`{subject}` is the `sub` the portal's identity provider gave the resident; the portal also sends
it with each submission in the `Resident-Subject` header, which is how the hub links the two. It is
kept only as a keyed digest and never logged. Another tenant's resident is not found.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ClientDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.errors import NotFound
from hub.residents.config import load_resident_config
from hub.residents.prefill import Prefiller
from hub.residents.record import record, resident_digest
from hub.runtime import Runtime
from hub.store import residents as store

router = APIRouter(prefix="/v1/residents", tags=["residents"])

# visible ASCII, as identity providers issue `sub` (OIDC Core: at most 255 ASCII characters)
SUBJECT_PATTERN = r"^[\x21-\x7e]{1,255}$"
Subject = Annotated[str, Path(min_length=1, max_length=255, pattern=SUBJECT_PATTERN,
                              description="The resident's `sub` from the portal's identity provider")]
_GONE = "No resident with this subject for this client."


class Source(BaseModel):
    type: str
    connector: str
    kind: str | None = None
    lookup: str | None = None


class PrefillField(BaseModel):
    pointer: str
    value: str | int | float | bool
    source: Source


class Unavailable(BaseModel):
    lookup: str
    detail: str


class Prefill(BaseModel):
    form_id: str
    fields: list[PrefillField]
    unavailable: list[Unavailable]


class BackOfficeStatus(BaseModel):
    status: str
    connector: str | None
    message: str | None
    occurred_at: str


class BackOfficeReference(BaseModel):
    connector: str
    external_reference: str


class RequestDelivery(BaseModel):
    connector: str
    state: str


class MyRequest(BaseModel):
    reference: str
    form_id: str
    received_at: str
    # the back office's last status, else "received", "sending", "sent" or "delayed"
    status: str
    back_office_status: BackOfficeStatus | None
    references: list[BackOfficeReference]
    deliveries: list[RequestDelivery]


class MyRequests(BaseModel):
    items: list[MyRequest]
    # pass as `before` for the next (older) page; null on the last page
    next_cursor: str | None


def prefiller(request: Request, runtime: Runtime) -> Prefiller:
    """The app's pre-filler (its lookup cache lives as long as the app)."""
    found: Prefiller | None = getattr(request.app.state, "prefiller", None)
    if found is None:
        found = request.app.state.prefiller = Prefiller(load_resident_config(runtime.settings.config_dir), runtime.connector)
    return found


@router.get("/{subject}/prefill", response_model=Prefill, response_model_exclude_none=True,
            responses=problem_responses(401, 404, 422, 503))
async def prefill(
    subject: Subject,
    request: Request,
    runtime: RuntimeDep,
    client: ClientDep,
    form: Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9-]*$", description="The form to pre-fill")],
) -> dict[str, Any]:
    tenant = runtime.config.tenants.get(client.tenant)
    if runtime.forms.get(form) is None or tenant is None or not tenant.offers(form) or not client.may_submit(form):
        raise NotFound(f"There is no form {form!r} for this client.")
    filler = prefiller(request, runtime)
    digest = resident_digest(runtime.index_key, subject)
    found = await run_in_threadpool(record, runtime.engine, runtime.sealer, filler.config, client.tenant, digest)
    if found is None:
        raise NotFound(_GONE)
    filled = await run_in_threadpool(filler.fill, client.tenant, digest, form, found)
    return {"form_id": form, "fields": filled.fields, "unavailable": filled.unavailable}


@router.get("/{subject}/submissions", response_model=MyRequests, responses=problem_responses(401, 404, 422, 503))
async def my_requests(
    subject: Subject,
    runtime: RuntimeDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Submissions per page, newest first")] = 20,
    before: Annotated[str | None, Query(max_length=20, pattern=r"^[1-9][0-9]*$", description="`next_cursor` of the previous page")] = None,
) -> dict[str, Any]:
    digest = resident_digest(runtime.index_key, subject)

    def read() -> tuple[list[dict[str, Any]], int | None] | None:
        with runtime.engine.connect() as conn:
            if not store.known(conn, client.tenant, digest):
                return None
            return store.submissions_page(conn, client.tenant, digest, limit, int(before) if before else None)

    page = await run_in_threadpool(read)
    if page is None:
        raise NotFound(_GONE)
    items, cursor = page
    return {"items": items, "next_cursor": str(cursor) if cursor is not None else None}
