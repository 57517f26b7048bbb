"""The console's admin pages: clients and their keys (create, rotate with a grace period, revoke),
webhook subscriptions (create, disable, delete) and the audit log (filter, CSV export). Each one
calls the services the admin API, the client API and the CLI use; a new key or secret is shown
once, on the page answering the POST, and never again.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from hub.api.deps import get_client_cache
from hub.api.routes.webhook_subscriptions import NewWebhook, register
from hub.config.files import Client
from hub.console.session import RuntimeDep, Signed, SignedDep, router
from hub.console.web import PREFIX, ConsoleError, set_cookie
from hub.errors import Forbidden, TooManyWebhooks
from hub.runtime import Runtime
from hub.store import audit, audit_search, clients, webhooks

ClientId = Annotated[str, Path(min_length=1, max_length=64)]
WebhookId = Annotated[str, Path(min_length=1, max_length=32)]
AUDIT_PAGE = 50
# OWASP "CSV injection": a spreadsheet runs a cell starting with one of these as a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _actor(signed: Signed) -> str:
    return f"staff:{signed.staff.id}"


# -- clients and keys


def _clients(runtime: Runtime, signed: Signed) -> tuple[list[Client], list[clients.StoredClient]]:
    configured = sorted((c for c in runtime.config.clients.values() if signed.staff.sees(c.tenant)), key=lambda c: (c.tenant, c.id))
    return configured, clients.listing(runtime.engine, signed.scope)


async def _clients_page(request: Request, runtime: Runtime, signed: Signed, status: int = 200, **context: Any) -> Response:
    configured, stored = await run_in_threadpool(_clients, runtime, signed)
    tenants = sorted(t for t in runtime.config.tenants if signed.staff.sees(t))
    context.setdefault("errors", [])
    context.setdefault("given", {})
    return signed.page(request, "clients.html", status=status, configured=configured, stored=stored, tenants=tenants,
                       grace_hours=runtime.settings.client_key_grace_hours, now=datetime.now(UTC), **context)


@router.get("/clients")
async def clients_list(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The council's API clients and their keys (first characters only); admins change them."""
    signed.require("viewer")
    return await _clients_page(request, runtime, signed)


@router.post("/clients")
async def clients_create(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Makes a client with `clients.create`, as the admin API does; its key is on this page only."""
    signed.require("admin")
    given = {k: signed.form.get(k, "").strip()[:255] for k in ("id", "name", "tenant", "forms", "expires_in_days")}
    tenant = signed.scope or given["tenant"]
    errors: list[dict[str, str]] = []
    if not tenant:
        errors.append({"field": "tenant", "text": "Choose the council the client works for"})
    elif not signed.staff.sees(tenant):
        errors.append({"field": "tenant", "text": "Choose one of your councils"})
    days: int | None = None
    if given["expires_in_days"]:
        if given["expires_in_days"].isdigit():
            days = int(given["expires_in_days"])
        else:
            errors.append({"field": "expires_in_days", "text": "Key lasts (days) must be a whole number from 1 to 3650, or empty"})
    forms = tuple(f.strip() for f in (given["forms"] or "*").split(",") if f.strip())
    if not errors:
        new = clients.NewClient(given["id"], tenant, given["name"], forms, days)
        for where, what in clients.problems(new, runtime.config, runtime.forms):
            field = where.split("/")[0]
            errors.append({"field": field, "text": f"{field.replace('_', ' ').capitalize()}: {what}"})
    if errors:
        return await _clients_page(request, runtime, signed, status=400, errors=errors, given=given)
    try:
        stored, key = await run_in_threadpool(clients.create, runtime.engine, new, _actor(signed))
    except clients.ClientExists:
        errors.append({"field": "id", "text": f"Id: a client {given['id']!r} already exists; choose another id"})
        return await _clients_page(request, runtime, signed, status=400, errors=errors, given=given)
    return signed.page(request, "client_key.html", status=201, client=stored, key=key, made="created", previous=None)


async def _stored(runtime: Runtime, signed: Signed, client_id: str) -> clients.StoredClient:
    """The stored client, if this member of staff's council has it (404 otherwise, whatever the role)."""
    configured = runtime.config.clients.get(client_id)
    if configured is not None and signed.staff.sees(configured.tenant):
        raise ConsoleError(400, "This client is in the configuration files",
                           f"Client {client_id} is defined in the configuration files: change its key there, and deploy.")
    found = await run_in_threadpool(clients.get, runtime.engine, client_id)
    if found is None or not signed.staff.sees(found.tenant):
        raise ConsoleError(404, "Client not found", f"There is no client {client_id} for you to see.")
    return found


@router.post("/clients/{client_id}/rotate")
async def clients_rotate(request: Request, client_id: ClientId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """A new key, shown on this page once; the old one keeps working for the grace period."""
    found = await _stored(runtime, signed, client_id)
    signed.require("admin")
    hours_given = signed.form.get("grace_hours", "").strip() or str(runtime.settings.client_key_grace_hours)
    if not hours_given.isdigit() or int(hours_given) > 720:
        return await _clients_page(request, runtime, signed, status=400, errors=[
            {"field": f"grace-{client_id}", "text": "The old key works for (hours) must be a whole number from 0 to 720"}])
    if signed.form.get("key_prefix") != found.key_prefix:
        # the form was sent again (a reload of the new key's page): one rotation, not two
        raise ConsoleError(409, "This key was rotated already",
                           f"Client {client_id}'s key changed since that page was shown: nothing was changed. Open Clients and keys again.")
    try:
        done = await run_in_threadpool(clients.rotate, runtime.engine, client_id, _actor(signed), timedelta(hours=int(hours_given)), signed.scope)
    except clients.ClientRevoked:
        raise ConsoleError(409, "This client was revoked", f"Client {client_id} was revoked: make a new client instead.") from None
    if done is None:
        raise ConsoleError(404, "Client not found", f"There is no client {client_id} for you to see.")
    get_client_cache(request).forget(client_id)
    stored, key = done
    return signed.page(request, "client_key.html", client=stored, key=key, made="rotated", previous=found.key_prefix)


@router.post("/clients/{client_id}/revoke")
async def clients_revoke(request: Request, client_id: ClientId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Revokes the client (its key, and an old key still in its grace period) with `clients.revoke`."""
    await _stored(runtime, signed, client_id)
    signed.require("admin")
    await run_in_threadpool(clients.revoke, runtime.engine, client_id, _actor(signed), signed.scope)
    get_client_cache(request).forget(client_id)
    return signed.redirect(f"{PREFIX}/clients?done=revoked#client-{client_id}")


@router.post("/clients/{client_id}/revoke-previous")
async def clients_revoke_previous(request: Request, client_id: ClientId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Ends the old key's grace period now; the current key keeps working."""
    await _stored(runtime, signed, client_id)
    signed.require("admin")
    await run_in_threadpool(clients.revoke_previous, runtime.engine, client_id, _actor(signed), signed.scope)
    get_client_cache(request).forget(client_id)
    return signed.redirect(f"{PREFIX}/clients?done=previous#client-{client_id}")


# -- webhook subscriptions


def _senders(runtime: Runtime, signed: Signed) -> dict[str, Client]:
    """The clients a webhook may be made for: the council's configured and active stored clients."""
    configured, stored = _clients(runtime, signed)
    found = {c.id: c for c in configured}
    found.update({s.id: s.as_client() for s in stored if s.state() == "active"})
    return found


def _webhooks(runtime: Runtime, signed: Signed) -> dict[str, Any]:
    hooks = webhooks.for_tenant(runtime.engine, signed.scope)
    recent = webhooks.recent_deliveries(runtime.engine, [h["id"] for h in hooks], per_webhook=5)
    return {"hooks": [{**h, "recent": recent[h["id"]]} for h in hooks], "senders": sorted(_senders(runtime, signed))}


async def _webhooks_page(request: Request, runtime: Runtime, signed: Signed, status: int = 200, **context: Any) -> Response:
    found = await run_in_threadpool(_webhooks, runtime, signed)
    context.setdefault("errors", [])
    context.setdefault("given", {})
    return signed.page(request, "webhooks.html", status=status, event_types=webhooks.EVENT_TYPES, **found, **context)


@router.get("/webhooks")
async def webhooks_list(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The council's webhooks, each with its last deliveries; never a secret."""
    signed.require("viewer")
    return await _webhooks_page(request, runtime, signed)


@router.post("/webhooks")
async def webhooks_create(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Registers a webhook for one of the council's clients with the client API's own `register`."""
    signed.require("admin")
    given = {"client_id": signed.form.get("client_id", "")[:64], "url": signed.form.get("url", "").strip()[:4096]}
    events = [e for e in webhooks.EVENT_TYPES if signed.form.get(f"event-{e}")]
    errors: list[dict[str, str]] = []
    client = (await run_in_threadpool(_senders, runtime, signed)).get(given["client_id"])
    if client is None:
        errors.append({"field": "client_id", "text": "Choose the client whose events the webhook receives"})
    try:
        NewWebhook(url=given["url"], events=events or None)  # type: ignore[arg-type]
    except ValidationError:
        errors.append({"field": "url", "text": "Enter the URL as http:// or https:// then a host name, such as https://portal.example.gov.uk/hub-events"})
    if client is not None and not errors:
        try:
            hook = await run_in_threadpool(register, runtime, client, given["url"], events or None)
        except Forbidden as exc:
            why = " ".join(e["detail"] for e in exc.errors or [])
            errors.append({"field": "url", "text": f"The hub will not call this URL: {why}"})
        except TooManyWebhooks as exc:
            errors.append({"field": "client_id", "text": exc.detail})
    if errors:
        return await _webhooks_page(request, runtime, signed, status=400, errors=errors, given=given, chosen=events)
    detail = {"client_id": hook.client_id, "url": hook.url, "events": list(hook.events)}
    await run_in_threadpool(audit.record, runtime.engine, _actor(signed), hook.tenant, "webhook.create", f"webhook:{hook.id}", detail)
    return signed.page(request, "webhook_secret.html", status=201, hook=hook, secret=hook.secrets[0].value)


@router.post("/webhooks/{webhook_id}/disable")
async def webhooks_disable(request: Request, webhook_id: WebhookId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Stops sending to a webhook: its waiting events are marked failed; audited."""
    await _webhook_in_scope(runtime, signed, webhook_id)
    signed.require("admin")
    done = await run_in_threadpool(webhooks.disable, runtime.engine, signed.scope, webhook_id, datetime.now(UTC))
    if done is not None:
        await run_in_threadpool(audit.record, runtime.engine, _actor(signed), done["tenant"], "webhook.disable", f"webhook:{webhook_id}", done)
    return signed.redirect(f"{PREFIX}/webhooks?done=disabled")


@router.post("/webhooks/{webhook_id}/delete")
async def webhooks_delete(request: Request, webhook_id: WebhookId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Deletes a webhook and its deliveries; audited."""
    await _webhook_in_scope(runtime, signed, webhook_id)
    signed.require("admin")
    done = await run_in_threadpool(webhooks.delete_for_tenant, runtime.engine, signed.scope, webhook_id)
    if done is not None:
        await run_in_threadpool(audit.record, runtime.engine, _actor(signed), done["tenant"], "webhook.delete", f"webhook:{webhook_id}", done)
    return signed.redirect(f"{PREFIX}/webhooks?done=deleted")


async def _webhook_in_scope(runtime: Runtime, signed: Signed, webhook_id: str) -> None:
    hooks = await run_in_threadpool(webhooks.for_tenant, runtime.engine, signed.scope)
    if not any(h["id"] == webhook_id for h in hooks):
        raise ConsoleError(404, "Webhook not found", f"There is no webhook {webhook_id} for you to see.")


# -- the audit log


def _audit_query(request: Request, signed: Signed) -> tuple[audit_search.AuditQuery, dict[str, str], list[dict[str, str]]]:
    given = {k: request.query_params.get(k, "").strip()[:255] for k in ("actor", "action", "reference", "from", "to")}
    errors: list[dict[str, str]] = []
    days: dict[str, date | None] = {}
    for field, label in (("from", "From"), ("to", "To")):
        try:
            days[field] = date.fromisoformat(given[field]) if given[field] else None
        except ValueError:
            errors.append({"field": field, "text": f"{label} must be a date like 2025-03-31"})
            days[field] = None
    since, to = days["from"], days["to"]
    if since and to and to < since:
        errors.append({"field": "to", "text": "To must be the same as or after from"})
    query = audit_search.AuditQuery(
        tenant=signed.scope, actor=given["actor"] or None, action=given["action"] or None, reference=given["reference"] or None,
        since=datetime.combine(since, time(), UTC) if since else None,
        until=datetime.combine(to + timedelta(days=1), time(), UTC) if to else None,
    )
    return query, given, errors


@router.get("/audit")
async def audit_log(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Who did what: filtered by actor, action, reference and date, newest first, 50 a page."""
    signed.require("viewer")
    query, given, errors = _audit_query(request, signed)
    before = request.query_params.get("before", "")
    entries: list[dict[str, Any]] = []
    older = None
    if not errors:
        entries, older = await run_in_threadpool(audit_search.page, runtime.engine, query, int(before) if before.isdigit() else None, AUDIT_PAGE)
    kept = {k: v for k, v in given.items() if v}
    return signed.page(request, "audit.html", status=400 if errors else 200, entries=entries, older=older, given=given,
                       kept=kept, errors=errors, paged=before.isdigit())


def neutralised(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ TAB or CR gets a leading quote."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


CSV_COLUMNS = ("id", "at", "actor", "tenant", "action", "target", "detail")


def csv_lines(entries: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The header and one CSV line per entry, every cell neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)

    def line(cells: list[str]) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow(cells)
        return out.getvalue()

    yield line(list(CSV_COLUMNS))
    for entry in entries:
        at = entry["at"]
        entry = {**entry, "id": str(entry["id"]), "at": at.isoformat() if isinstance(at, datetime) else at}
        yield line([neutralised(entry[c]) for c in CSV_COLUMNS])


@router.get("/audit.csv")
async def audit_export(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The filtered entries as CSV, streamed a batch at a time; the export is itself audited."""
    signed.require("viewer")
    query, given, errors = _audit_query(request, signed)
    if errors:
        return signed.page(request, "audit.html", status=400, entries=[], older=None, given=given,
                           kept={k: v for k, v in given.items() if v}, errors=errors, paged=False)
    detail = {"filters": {k: v for k, v in given.items() if v}}
    await run_in_threadpool(audit.record, runtime.engine, _actor(signed), signed.scope, "audit.export", "audit_log", detail)
    rows = iterate_in_threadpool(csv_lines(audit_search.every(runtime.engine, query)))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingResponse(rows, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="audit-{signed.staff.tenant.replace("*", "all")}-{stamp}.csv"'})
    set_cookie(response, signed.session.token)
    return response
