"""The admin API for council staff: connector state, pausing, parked deliveries, replay, audit trail.

Staff authenticate with a bearer token: a local token configured per person, or a session from
an OpenID Connect sign-in (HUB_STAFF_AUTH). Roles: viewer (metadata), caseworker (personal data),
operator (replay, pause), admin (configuration, clients). Staff working for one tenant see and
act on that tenant's objects only; anything of another tenant is answered 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from hub import metrics
from hub.api.deps import (
    RelayDep,
    RuntimeDep,
    bearer_identity,
    challenge,
    get_limits,
    get_runtime,
    get_session_secret,
    limited_identity,
)
from hub.api.problems import problem_responses
from hub.auth import sessions
from hub.config.files import ConnectorConfig, Role, Staff
from hub.errors import Erased, Forbidden, NotFound, SessionError, SessionExpired, Unauthorized
from hub.runtime import Runtime
from hub.store import audit, circuits
from hub.store.replay import ParkedFilter, counts_by_connector, erased_among, find_parked, replay

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403, 422, 429, 503))
_bearer = HTTPBearer(auto_error=False, scheme_name="StaffToken", description="A member of staff's token")


STAFF_REALM = "council-connector-hub admin"


def get_staff(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Staff:
    mode = runtime.settings.staff_auth

    def lookup(token: str) -> Staff | None:
        if mode != "local" and sessions.looks_like_jwt(token):
            try:
                staff_id = sessions.verify(token, get_session_secret(request))
            except SessionExpired:
                raise Unauthorized("This session has expired; sign in again at /v1/auth/login.", headers=challenge(STAFF_REALM)) from None
            except SessionError:
                # not one of our sessions: in "both" mode it may still be a local token
                return runtime.config.staff_for_token(token) if mode == "both" else None
            # roles and tenant come from today's configuration; a person removed from it is out
            return runtime.config.staff.get(staff_id)
        return runtime.config.staff_for_token(token) if mode != "oidc" else None

    staff = limited_identity(request, lambda: bearer_identity(credentials, lookup, "staff token", STAFF_REALM))
    get_limits(request).check_staff(staff.id)
    return staff


StaffDep = Annotated[Staff, Depends(get_staff)]


def _require(staff: Staff, role: Role) -> None:
    if not staff.can(role):
        raise Forbidden(f"This needs the {role} role; {staff.id} has {', '.join(staff.roles)}.")


def _scope(staff: Staff) -> str | None:
    return None if staff.tenant == "*" else staff.tenant


def _visible(staff: Staff, connector: ConnectorConfig) -> bool:
    """A connector is seen by staff of every tenant it serves (all of them for a shared one)."""
    return staff.tenant == "*" or "*" in connector.tenants or staff.tenant in connector.tenants


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


@router.get("/quotas")
async def quotas(request: Request, staff: StaffDep) -> list[dict[str, Any]]:
    """Each tenant's daily quota of client requests (this staff member's tenants): used and
    remaining today as this api replica counted them, and when the day resets (UTC)."""
    _require(staff, "viewer")
    scope = _scope(staff)
    return [entry for entry in get_limits(request).quotas() if scope is None or entry["tenant"] == scope]


@router.get("/connectors")
async def connectors(runtime: RuntimeDep, staff: StaffDep) -> list[dict[str, Any]]:
    """Every connector this member of staff may see, with its circuit breaker, whether it is
    paused, and its deliveries by state (of their tenant only)."""
    _require(staff, "viewer")
    states = await run_in_threadpool(circuits.read_all, runtime.engine)
    counts = await run_in_threadpool(counts_by_connector, runtime.engine, _scope(staff))
    listed = []
    for name in runtime.connector_names():
        config = runtime.config.connectors[name]
        if not _visible(staff, config):
            continue
        circuit = states.get(name, circuits.Circuit(name, "closed", 0, None))
        by_state = {s: counts.get(name, {}).get(s, 0) for s in ("pending", "retrying", "delivered", "parked")}
        if staff.tenant == "*":
            metrics.PARKED.labels(name).set(by_state["parked"])
        listed.append(
            {
                "name": name,
                "type": config.type,
                "tenants": list(config.tenants) if staff.tenant == "*" else [t for t in config.tenants if t in ("*", staff.tenant)],
                "circuit": {
                    "state": circuit.state,
                    "consecutive_failures": circuit.failures,
                    "open_until": circuit.opened_until.isoformat() if circuit.opened_until else None,
                },
                "paused": circuit.paused_at is not None,
                "paused_at": circuit.paused_at.isoformat() if circuit.paused_at else None,
                "paused_by": circuit.paused_by,
                "deliveries": by_state,
            }
        )
    return listed


def _pausable(runtime: Runtime, staff: Staff, name: str) -> ConnectorConfig:
    _require(staff, "operator")
    config = runtime.config.connectors.get(name)
    if config is None or not _visible(staff, config):
        raise NotFound(f"No connector {name!r} for this member of staff.")
    if staff.tenant != "*" and config.tenants != (staff.tenant,):
        raise Forbidden(
            f"Connector {name!r} also carries other councils' submissions, so only an operator working for every tenant may pause or resume it.",
        )
    return config


def _only_tenant(connector: ConnectorConfig) -> str | None:
    """The tenant a connector's audit entries belong to: its only one; None when shared."""
    return connector.tenants[0] if len(connector.tenants) == 1 and connector.tenants[0] != "*" else None


def _pause_view(name: str, circuit: circuits.Circuit, changed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "paused": circuit.paused_at is not None,
        "paused_at": circuit.paused_at.isoformat() if circuit.paused_at else None,
        "paused_by": circuit.paused_by,
        "changed": changed,
    }


@router.post("/connectors/{name}/pause", responses=problem_responses(404))
async def pause_connector(name: str, runtime: RuntimeDep, staff: StaffDep) -> dict[str, Any]:
    """Holds the connector's deliveries back (not counted as attempts) until it is resumed."""
    return await _switch(circuits.pause, name, runtime, staff)


@router.post("/connectors/{name}/resume", responses=problem_responses(404))
async def resume_connector(name: str, runtime: RuntimeDep, staff: StaffDep) -> dict[str, Any]:
    """Lets a paused connector's deliveries flow again."""
    return await _switch(circuits.resume, name, runtime, staff)


async def _switch(change: Callable[..., Any], name: str, runtime: Runtime, staff: Staff) -> dict[str, Any]:
    """Pauses or resumes (audited with the staff member), then shows the connector as it now is."""
    tenant = _only_tenant(_pausable(runtime, staff, name))
    changed = await run_in_threadpool(change, runtime.engine, name, f"staff:{staff.id}", tenant)
    now = await run_in_threadpool(circuits.read, runtime.engine, name)
    return _pause_view(name, now, changed is not None)


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


@router.post("/deliveries/{delivery_id}/replay", responses=problem_responses(404, 409))
async def replay_one(delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)], runtime: RuntimeDep, relay: RelayDep, staff: StaffDep) -> dict[str, Any]:
    """Re-queue one parked delivery; it is mapped again from the original payload. One whose
    submission was erased at the resident's request is refused (409)."""
    _require(staff, "operator")
    flt = ParkedFilter(ids=(delivery_id,), tenant=_scope(staff))
    done = await run_in_threadpool(replay, runtime.engine, flt, f"staff:{staff.id}")
    erased: list[int] = [] if done else await run_in_threadpool(erased_among, runtime.engine, flt)
    if erased:
        raise Erased(f"Delivery {delivery_id} was erased at the resident's request; it cannot be replayed.")
    if not done:
        raise NotFound(f"No parked delivery {delivery_id} for this member of staff.")
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
async def audit_trail(
    runtime: RuntimeDep,
    staff: StaffDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    since: IsoDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> list[dict[str, Any]]:
    """The audit trail, oldest first: who did what, when, for which tenant, to which target."""
    _require(staff, "viewer")
    flt = audit.AuditFilter(action=action, actor=actor, since=since, tenant=_scope(staff), limit=limit)
    return await run_in_threadpool(audit.entries, runtime.engine, flt)
