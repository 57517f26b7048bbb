"""The admin API for council staff: connector state, parked deliveries, replay, audit trail.

Staff authenticate with a bearer token (configured per person, with roles); a member of staff
working for one tenant sees and replays only that tenant's deliveries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from hub import metrics
from hub.api.deps import RelayDep, RuntimeDep, bearer_identity, get_runtime
from hub.api.problems import Problem, problem_responses
from hub.config import Role, Staff
from hub.runtime import Runtime
from hub.store import circuits
from hub.store.replay import ParkedFilter, audit_entries, counts_by_connector, find_parked, replay

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403, 422, 503))
_bearer = HTTPBearer(auto_error=False, scheme_name="StaffToken", description="A member of staff's token")


def get_staff(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Staff:
    return bearer_identity(credentials, runtime.config.staff_for_token, "staff token", "council-connector-hub admin")


StaffDep = Annotated[Staff, Depends(get_staff)]


def _require(staff: Staff, role: Role) -> None:
    if not staff.can(role):
        raise Problem(403, "forbidden", f"This needs the {role} role; {staff.id} has {', '.join(staff.roles)}.")


def _scope(staff: Staff) -> str | None:
    return None if staff.tenant == "*" else staff.tenant


def _iso_only(value: Any) -> Any:
    """Pydantic reads a number as a Unix timestamp; the document promises an ISO 8601 date-time."""
    if isinstance(value, (int, float)):
        raise ValueError("give an ISO 8601 date-time, such as 2025-01-31T09:00:00Z")
    if isinstance(value, (str, bytes)):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("give an ISO 8601 date-time, such as 2025-01-31T09:00:00Z")
    return value


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]


class ReplayRequest(BaseModel):
    connector: str | None = None
    since: IsoDatetime | None = None
    reason_contains: str | None = Field(default=None, max_length=200)
    dry_run: StrictBool = False


@router.get("/connectors")
async def connectors(runtime: RuntimeDep, staff: StaffDep) -> list[dict[str, Any]]:
    """Every connector with its circuit breaker and its deliveries by state."""
    _require(staff, "viewer")
    states = await run_in_threadpool(circuits.read_all, runtime.engine)
    counts = await run_in_threadpool(counts_by_connector, runtime.engine, _scope(staff))
    listed = []
    for name in runtime.connector_names():
        circuit = states.get(name, circuits.Circuit(name, "closed", 0, None))
        by_state = {s: counts.get(name, {}).get(s, 0) for s in ("pending", "retrying", "delivered", "parked")}
        if staff.tenant == "*":
            metrics.PARKED.labels(name).set(by_state["parked"])
        listed.append(
            {
                "name": name,
                "type": runtime.config.connectors[name].type,
                "circuit": {
                    "state": circuit.state,
                    "consecutive_failures": circuit.failures,
                    "open_until": circuit.opened_until.isoformat() if circuit.opened_until else None,
                },
                "deliveries": by_state,
            }
        )
    return listed


@router.get("/deliveries")
async def parked_deliveries(
    runtime: RuntimeDep,
    staff: StaffDep,
    connector: str | None = None,
    since: IsoDatetime | None = None,
    reason_contains: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    """Parked deliveries, newest filter first: what failed and why."""
    _require(staff, "viewer")
    flt = ParkedFilter(connector=connector, since=since, reason_contains=reason_contains, tenant=_scope(staff))
    return await run_in_threadpool(find_parked, runtime.engine, flt)


@router.post("/deliveries/{delivery_id}/replay", responses=problem_responses(404))
async def replay_one(delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], runtime: RuntimeDep, relay: RelayDep, staff: StaffDep) -> dict[str, Any]:
    """Re-queue one parked delivery; it is mapped again from the original payload."""
    _require(staff, "operator")
    flt = ParkedFilter(ids=(delivery_id,), tenant=_scope(staff))
    done = await run_in_threadpool(replay, runtime.engine, flt, f"staff:{staff.id}")
    if not done:
        raise Problem(404, "not-found", f"No parked delivery {delivery_id} for this member of staff.")
    if relay is not None:
        relay.wake()
    return {"replayed": done[0]}


@router.post("/deliveries/replay", responses=problem_responses(400))
async def replay_many(body: ReplayRequest, runtime: RuntimeDep, relay: RelayDep, staff: StaffDep) -> dict[str, Any]:
    """Re-queue every parked delivery the filter selects; `dry_run` only lists them."""
    _require(staff, "operator")
    flt = ParkedFilter(connector=body.connector, since=body.since, reason_contains=body.reason_contains, tenant=_scope(staff))
    done = await run_in_threadpool(replay, runtime.engine, flt, f"staff:{staff.id}", body.dry_run)
    if done and not body.dry_run and relay is not None:
        relay.wake()
    return {"dry_run": body.dry_run, "count": len(done), "deliveries": done}


@router.get("/audit")
async def audit(runtime: RuntimeDep, staff: StaffDep, action: str | None = None) -> list[dict[str, Any]]:
    """The audit trail: who did what, when, to which delivery."""
    _require(staff, "viewer")
    return await run_in_threadpool(audit_entries, runtime.engine, action, _scope(staff))
