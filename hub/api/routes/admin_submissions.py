"""The admin API's personal-data side: one submission as staff see it (x-pii fields masked for
staff without the caseworker role), and a resident's subject access and erasure requests.

A member of staff working for one tenant reaches only that tenant's submissions and residents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RuntimeDep
from hub.api.problems import problem_responses
from hub.api.routes.admin import StaffDep, _require, _scope
from hub.config.files import Staff
from hub.errors import Forbidden, NotFound, UnknownKey
from hub.privacy.subjects import Erased, erase, erase_resident, export
from hub.runtime import Runtime
from hub.store import audit, personal_data

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403, 422, 503))
HIDDEN = "[hidden]"


# the blanks are spelt out: `\s` is a different set of characters in ECMA regexes (what the
# OpenAPI document promises) and in the Rust regexes pydantic checks with (U+0085, for one)
_BLANK = r"[ \t\n\r\f\v]"
_EMAIL = rf"^{_BLANK}*[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+\.[^@ \t\n\r\f\v]+{_BLANK}*$"


class SubjectRequest(BaseModel):
    """A resident, by e-mail address; staff who work for every tenant also name the tenant."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(
        min_length=3, max_length=320, pattern=_EMAIL, description="The resident's e-mail address"
    )
    tenant: str | None = Field(default=None, max_length=64, description="Only for staff who work for every tenant")


class ResidentRequest(BaseModel):
    """A signed-in resident, by the `sub` the portal's identity provider gave them."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$", description="The resident's `sub`")
    tenant: str | None = Field(default=None, max_length=64, description="Only for staff who work for every tenant")


def _tenant_for(runtime: Runtime, staff: Staff, body: SubjectRequest | ResidentRequest) -> str:
    """The one tenant whose submissions the request reaches. (The address is checked by the
    schema's pattern, whose message does not repeat it.)"""
    if staff.tenant != "*":
        if body.tenant is not None and body.tenant != staff.tenant:
            raise NotFound(f"No tenant {body.tenant!r} for this member of staff.")
        return staff.tenant
    if body.tenant is None:
        # a resident's request is answered per council: never across every tenant at once
        raise Forbidden(f"{staff.id} works for every tenant: name the tenant in `tenant`.", errors=[
            {"pointer": "/tenant", "detail": "tenant is required for staff who work for every tenant"}])
    if body.tenant not in runtime.config.tenants:
        raise NotFound(f"No tenant {body.tenant!r}.")
    return body.tenant


def _submission(runtime: Runtime, staff: Staff, reference: str) -> dict[str, Any] | None:
    with runtime.engine.begin() as conn:
        row = personal_data.by_reference(conn, reference, _scope(staff))
        if row is None:
            return None
        personal = staff.can("caseworker") and staff.sees(row.tenant)
        found: dict[str, Any] = {
            "tenant": row.tenant,
            "client_id": row.client_id,
            "personal_data": "shown" if personal else "hidden",
            **personal_data.summary(conn, row, bool(runtime.settings.clamd_socket)),
        }
        if row.payload is not None:
            try:
                found["payload"] = _shown(runtime, row, runtime.sealer.open(row.payload), personal)
            except UnknownKey as error:
                found["payload_error"] = str(error)
        if personal and found["payload"] is not None:
            detail = {"form": row.form_id}
            audit.record(conn, f"staff:{staff.id}", row.tenant, "submission.view", row.reference, detail, at=datetime.now(UTC))
        if not personal:
            # a back office's message may name the resident: metadata only for viewers
            for event in found["timeline"]:
                if event["message"] is not None:
                    event["message"] = HIDDEN
        return found


def _shown(runtime: Runtime, row: Any, payload: Any, personal: bool) -> Any:
    if personal:
        return payload
    form = runtime.forms.get(row.form_id, row.form_version)
    # without its schema nothing tells personal answers from the rest: hide them all
    return form.masked(payload, HIDDEN) if form is not None else HIDDEN


@router.get("/submissions/{reference}", responses=problem_responses(404))
async def submission(
    reference: Annotated[str, Path(min_length=1, max_length=32)], runtime: RuntimeDep, staff: StaffDep
) -> dict[str, Any]:
    """One submission: metadata, deliveries and timeline, and its answers (x-pii fields shown
    only to caseworkers and above, each such view audited)."""
    _require(staff, "viewer")
    found = await run_in_threadpool(_submission, runtime, staff, reference)
    if found is None:
        raise NotFound(f"No submission {reference!r} for this member of staff.")
    return found


@router.post("/subjects/export", responses=problem_responses(400, 404))
async def subject_export(body: SubjectRequest, runtime: RuntimeDep, staff: StaffDep) -> dict[str, Any]:
    """Everything the hub holds about one resident in the tenant: a subject access request."""
    _require(staff, "caseworker")
    tenant = _tenant_for(runtime, staff, body)
    return await run_in_threadpool(export, runtime, tenant, body.email, f"staff:{staff.id}")


@router.post("/subjects/erase", responses=problem_responses(400, 404))
async def subject_erase(body: SubjectRequest, runtime: RuntimeDep, staff: StaffDep) -> dict[str, Any]:
    """Remove one resident's personal data from every submission they made to the tenant."""
    _require(staff, "admin")
    tenant = _tenant_for(runtime, staff, body)
    done = await run_in_threadpool(erase, runtime, tenant, body.email, f"staff:{staff.id}")
    return _erased(tenant, done)


@router.post("/residents/erase", responses=problem_responses(400, 404, 422))
async def resident_erase(body: ResidentRequest, runtime: RuntimeDep, staff: StaffDep) -> dict[str, Any]:
    """Erase a signed-in resident: their submissions' personal data, their customer record and links."""
    _require(staff, "admin")
    tenant = _tenant_for(runtime, staff, body)
    done = await run_in_threadpool(erase_resident, runtime, tenant, body.subject, f"staff:{staff.id}")
    return {**_erased(tenant, done.submissions), "references_removed": done.references_removed}


def _erased(tenant: str, done: list[Erased]) -> dict[str, Any]:
    """The answer to an erase: the tenant, how many submissions, and what happened to each."""
    return {
        "tenant": tenant,
        "erased": len(done),
        "submissions": [
            {"reference": e.reference, "form_id": e.form_id, "payload": e.payload, "deliveries_parked": e.deliveries_parked}
            for e in done
        ],
    }
