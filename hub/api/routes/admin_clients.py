"""Front-end clients for admins: make one (its API key is in the answer, once), list them,
rotate a key (the old one works through a grace period), revoke one. An admin working for one tenant sees and manages only that tenant's clients.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RuntimeDep, get_client_cache
from hub.api.problems import problem_responses
from hub.api.routes.admin import StaffDep, _require, _scope
from hub.config.files import Client
from hub.errors import BadRequest, Conflict, MethodNotAllowed, NotFound, ValidationFailed
from hub.store import clients
from hub.store.clients import ClientCache

router = APIRouter(prefix="/v1/admin/clients", tags=["admin"], responses=problem_responses(401, 403, 422, 503))
ClientId = Annotated[str, Path(min_length=1, max_length=64)]


class ClientRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=63, description="Lower-case letters, digits and hyphens")
    tenant: str | None = Field(default=None, max_length=64, description="Defaults to the admin's own tenant")
    name: str = Field(default="", max_length=255)
    forms: list[str] = Field(default=["*"], min_length=1, max_length=200, description="Form ids, or * for every form the tenant offers")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


def _configured(client: Client) -> dict[str, Any]:
    return {"id": client.id, "tenant": client.tenant, "name": client.name, "forms": list(client.forms), "source": "config"}


@router.post("", status_code=201, responses=problem_responses(400, 404))
async def create_client(body: ClientRequest, runtime: RuntimeDep, staff: StaffDep) -> JSONResponse:
    """Makes a client with a new API key. The key is in this answer only: the hub keeps its hash."""
    _require(staff, "admin")
    tenant = body.tenant or _scope(staff)
    if tenant is None:
        raise ValidationFailed("Name the tenant the client works for.",
                      errors=[{"pointer": "/tenant", "detail": "required for staff working for every tenant"}])
    if not staff.sees(tenant):
        raise NotFound(f"No tenant {tenant!r} for this member of staff.")
    new = clients.NewClient(body.id, tenant, body.name, tuple(body.forms), body.expires_in_days)
    problems = clients.problems(new, runtime.config, runtime.forms)
    if problems:
        raise ValidationFailed(f"{len(problems)} field(s) need attention.",
                      errors=[{"pointer": f"/{where}", "detail": what} for where, what in problems])
    try:
        stored, key = await run_in_threadpool(clients.create, runtime.engine, new, f"staff:{staff.id}")
    except clients.ClientExists:
        raise ValidationFailed("1 field(s) need attention.",
                      errors=[{"pointer": "/id", "detail": f"a client {body.id!r} already exists; choose another id"}]) from None
    return JSONResponse({**stored.as_dict(), "api_key": key}, status_code=201, headers={"Cache-Control": "no-store"})


@router.get("")
async def list_clients(runtime: RuntimeDep, staff: StaffDep) -> list[dict[str, Any]]:
    """Every client of this admin's tenant(s): configured ones, and stored ones with the first
    characters of their key, its expiry and whether it was revoked (never the key)."""
    _require(staff, "admin")
    stored = await run_in_threadpool(clients.listing, runtime.engine, _scope(staff))
    configured = [_configured(c) for c in sorted(runtime.config.clients.values(), key=lambda c: (c.tenant, c.id)) if staff.sees(c.tenant)]
    return configured + [c.as_dict() for c in stored]


@router.api_route("", methods=["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], include_in_schema=False)
async def other_methods() -> None:
    # GET and POST are two routes on one path: left to the router, a 405 would allow only one
    raise MethodNotAllowed("Use GET to list the clients or POST to make one.", headers={"Allow": "GET, POST"})


@router.post("/{client_id}/revoke", responses=problem_responses(400, 404))
async def revoke_client(
    client_id: ClientId, runtime: RuntimeDep, staff: StaffDep, cache: Annotated[ClientCache, Depends(get_client_cache)]
) -> dict[str, Any]:
    """Revokes a stored client's key: refused at once by this process, within
    HUB_CLIENT_CACHE_SECONDS by the others."""
    _require(staff, "admin")
    configured = runtime.config.clients.get(client_id)
    if configured is not None and staff.sees(configured.tenant):
        raise BadRequest(f"Client {client_id!r} is defined in the configuration files; remove its key there.")
    revoked = await run_in_threadpool(clients.revoke, runtime.engine, client_id, f"staff:{staff.id}", _scope(staff))
    if revoked is None:
        raise NotFound(f"No client {client_id!r} for this member of staff.")
    cache.forget(client_id)
    return revoked.as_dict()


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_hours: int | None = Field(default=None, ge=0, le=720, description="How long the old key keeps working (default HUB_CLIENT_KEY_GRACE_HOURS)")


@router.post("/{client_id}/rotate", responses=problem_responses(400, 404, 409))
async def rotate_client(
    client_id: ClientId, runtime: RuntimeDep, staff: StaffDep, cache: Annotated[ClientCache, Depends(get_client_cache)],
    body: RotateRequest | None = None,
) -> JSONResponse:
    """A new API key for a stored client, in this answer only; the old key keeps working until
    `previous_key_expires_at`. Audited (`client.rotate`), as the console's rotation."""
    _require(staff, "admin")
    configured = runtime.config.clients.get(client_id)
    if configured is not None and staff.sees(configured.tenant):
        raise BadRequest(f"Client {client_id!r} is defined in the configuration files; change its key there.")
    hours = body.grace_hours if body is not None and body.grace_hours is not None else runtime.settings.client_key_grace_hours
    try:
        done = await run_in_threadpool(clients.rotate, runtime.engine, client_id, f"staff:{staff.id}", timedelta(hours=hours), _scope(staff))
    except clients.ClientRevoked as exc:
        raise Conflict(exc.detail) from None
    if done is None:
        raise NotFound(f"No client {client_id!r} for this member of staff.")
    cache.forget(client_id)
    stored, key = done
    answer = {**stored.as_dict(), "api_key": key}
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
