"""Front-end clients manage their webhooks here: register a URL, list them with their recent
deliveries, delete one, rotate its signing secret (both secrets sign until the old one is dropped).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ClientDep, RuntimeDep
from hub.api.problems import problem_responses
from hub.config.files import Client
from hub.delivery.webhook_sender import new_secret
from hub.errors import Forbidden, MethodNotAllowed, NotFound, OutboundRefused, TooManyWebhooks
from hub.outbound.guard import AllowList, check_url
from hub.runtime import Runtime
from hub.store import webhooks as store

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
MAX_WEBHOOKS_PER_CLIENT = 10


EventType = Literal["delivery.delivered", "delivery.parked", "submission.status_changed"]
# a host name or IPv4 address, an optional port, then any path and query
URL_PATTERN = r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?(?:[/?][!-~]*)?$"


class NewWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=URL_PATTERN, max_length=2048, description="An http(s) URL on a host the council allows")
    events: list[EventType] | None = Field(default=None, min_length=1, description="Event types to send (default: all)")


class Delivery(BaseModel):
    message_id: str
    event_type: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: str
    # while a rotated-out secret still signs requests, when it stops
    previous_secret_expires_at: str | None
    recent_deliveries: list[Delivery]


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class WebhookCreated(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: str
    secret: str = Field(description="Shown once: verify each request's webhook-signature with it")


class SecretRotated(BaseModel):
    id: str
    secret: str = Field(description="The new secret, shown once")
    previous_secret_expires_at: str | None


def _out(hook: store.Webhook, recent: list[dict[str, Any]]) -> dict[str, Any]:
    expires = hook.previous_expires_at()
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "created_at": hook.created_at.isoformat(),
        "previous_secret_expires_at": expires.isoformat() if expires is not None and expires > datetime.now(UTC) else None,
        "recent_deliveries": recent,
    }


def _refusal(runtime: Runtime, client: Client, url: str) -> str | None:
    """Why the hub will not call this URL for this client's council, or None."""
    tenant = runtime.config.tenants.get(client.tenant)
    try:
        check_url(url, AllowList(tenant.allowed_hosts if tenant is not None else (), owner=f"tenant {client.tenant}"))
    except OutboundRefused as exc:
        return f"{exc.reason}."
    except ValueError:  # a port out of range
        return "The URL cannot be read."
    return None


def _found(runtime: Runtime, client: Client, webhook_id: str) -> store.Webhook:
    hook = store.get(runtime.engine, runtime.sealer, client.tenant, client.id, webhook_id)
    if hook is None:
        raise NotFound(f"No webhook {webhook_id!r} for this client.")
    return hook


def register(runtime: Runtime, client: Client, url: str, events: list[str] | None) -> store.Webhook:
    """Stores a new webhook for the client (its secret inside, to be shown once); Forbidden when
    the council does not allow the URL, TooManyWebhooks past the limit. The console calls this too.
    Blocks (it resolves the URL's host): run it in a thread."""
    refused = _refusal(runtime, client, url)
    if refused is not None:
        raise Forbidden("The hub will not call this URL.", errors=[{"pointer": "/url", "detail": refused}])
    if store.count_for_client(runtime.engine, client.tenant, client.id) >= MAX_WEBHOOKS_PER_CLIENT:
        raise TooManyWebhooks(f"A client may have {MAX_WEBHOOKS_PER_CLIENT} webhooks; delete one first.")
    now = datetime.now(UTC)
    hook = store.Webhook(
        id="wh_" + secrets.token_hex(12),
        tenant=client.tenant,
        client_id=client.id,
        url=url,
        events=tuple(dict.fromkeys(events or store.EVENT_TYPES)),
        created_at=now,
        secrets=(store.Secret(new_secret(), now),),
    )
    store.create(runtime.engine, runtime.sealer, hook)
    return hook


@router.post("", status_code=201, response_model=WebhookCreated, responses=problem_responses(400, 401, 403, 409, 422, 503))
async def create_webhook(new: NewWebhook, runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    """403 when the council does not allow the URL's host (or it is a link-local / metadata address)."""
    hook = await run_in_threadpool(register, runtime, client, new.url, list(new.events) if new.events else None)
    return {"id": hook.id, "url": hook.url, "events": list(hook.events), "created_at": hook.created_at.isoformat(), "secret": hook.secrets[0].value}


@router.get("", response_model=WebhookList, responses=problem_responses(401, 503))
async def list_webhooks(runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        hooks = store.for_client(runtime.engine, runtime.sealer, client.tenant, client.id)
        recent = store.recent_deliveries(runtime.engine, [h.id for h in hooks])
        return {"webhooks": [_out(h, recent[h.id]) for h in hooks]}

    return await run_in_threadpool(read)


@router.api_route("", methods=["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], include_in_schema=False)
async def other_methods() -> Response:
    # Starlette's own 405 lists only the first route's methods; this path has two
    raise MethodNotAllowed("Method Not Allowed", headers={"Allow": "GET, POST"})


@router.delete("/{webhook_id}", status_code=204, responses=problem_responses(401, 404, 503))
async def delete_webhook(webhook_id: str, runtime: RuntimeDep, client: ClientDep) -> Response:
    if not await run_in_threadpool(store.remove, runtime.engine, client.tenant, client.id, webhook_id):
        raise NotFound(f"No webhook {webhook_id!r} for this client.")
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=SecretRotated, responses=problem_responses(401, 404, 503))
async def rotate_secret(webhook_id: str, runtime: RuntimeDep, client: ClientDep) -> dict[str, Any]:
    """A new secret signs from now on; the current one keeps signing too for 24 hours (or until
    it is dropped), so the receiver can switch without missing a request. An older one goes."""
    hook = await run_in_threadpool(_found, runtime, client, webhook_id)
    now = datetime.now(UTC)
    fresh = store.Secret(new_secret(), now)
    await run_in_threadpool(store.replace_secrets, runtime.engine, runtime.sealer, hook, (fresh, hook.secrets[0]))
    expires = now + store.PREVIOUS_SECRET_GRACE
    return {"id": hook.id, "secret": fresh.value, "previous_secret_expires_at": expires.isoformat()}


@router.delete("/{webhook_id}/previous-secret", status_code=204, responses=problem_responses(401, 404, 503))
async def drop_previous_secret(webhook_id: str, runtime: RuntimeDep, client: ClientDep) -> Response:
    """Only the newest secret signs from now on."""
    hook = await run_in_threadpool(_found, runtime, client, webhook_id)
    if len(hook.secrets) > 1:
        await run_in_threadpool(store.replace_secrets, runtime.engine, runtime.sealer, hook, hook.secrets[:1])
    return Response(status_code=204)
