"""Front-end clients' webhooks and the events waiting for them, in the database: secrets kept
sealed, events queued as webhook_deliveries rows that senders claim, send and settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.privacy.sealing import Sealer
from hub.store.tables import OPEN_STATES, webhook_deliveries, webhooks

EVENT_TYPES = ("delivery.delivered", "delivery.parked", "submission.status_changed")
# after a rotation the previous secret stays valid this long, so receivers can switch over
PREVIOUS_SECRET_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class Secret:
    value: str  # whsec_<base64>
    created_at: datetime


@dataclass(frozen=True)
class Webhook:
    id: str
    tenant: str
    client_id: str
    url: str
    events: tuple[str, ...]
    created_at: datetime
    # newest first: the second, while it lasts, is the one a rotation replaced
    secrets: tuple[Secret, ...]

    def previous_expires_at(self) -> datetime | None:
        return self.secrets[0].created_at + PREVIOUS_SECRET_GRACE if len(self.secrets) > 1 else None

    def valid_secrets(self, now: datetime) -> tuple[Secret, ...]:
        expires = self.previous_expires_at()
        return self.secrets if expires is not None and now < expires else self.secrets[:1]


def _seal(sealer: Sealer, secrets: Sequence[Secret]) -> str:
    return sealer.seal([{"secret": s.value, "created_at": s.created_at.isoformat()} for s in secrets])


def _webhook(sealer: Sealer, row: Any) -> Webhook:
    opened = sealer.open(row.secrets)
    secrets = tuple(Secret(item["secret"], datetime.fromisoformat(item["created_at"])) for item in opened)
    return Webhook(row.id, row.tenant, row.client_id, row.url, tuple(row.events), row.created_at, secrets)


def create(engine: Engine, sealer: Sealer, webhook: Webhook) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(webhooks).values(
                id=webhook.id,
                tenant=webhook.tenant,
                client_id=webhook.client_id,
                url=webhook.url,
                secrets=_seal(sealer, webhook.secrets),
                events=list(webhook.events),
                created_at=webhook.created_at,
            )
        )


def _owned(tenant: str, client_id: str) -> Any:
    # a webhook is its client's alone: another client, or another tenant, is told it does not exist
    return (webhooks.c.tenant == tenant) & (webhooks.c.client_id == client_id) & webhooks.c.disabled_at.is_(None)


def for_client(engine: Engine, sealer: Sealer, tenant: str, client_id: str) -> list[Webhook]:
    with engine.connect() as conn:
        rows = conn.execute(select(webhooks).where(_owned(tenant, client_id)).order_by(webhooks.c.created_at, webhooks.c.id)).all()
    return [_webhook(sealer, row) for row in rows]


def get(engine: Engine, sealer: Sealer, tenant: str, client_id: str, webhook_id: str) -> Webhook | None:
    with engine.connect() as conn:
        row = conn.execute(select(webhooks).where(_owned(tenant, client_id), webhooks.c.id == webhook_id)).first()
    return _webhook(sealer, row) if row is not None else None


def count_for_client(engine: Engine, tenant: str, client_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(webhooks).where(_owned(tenant, client_id))).scalar_one())


def remove(engine: Engine, tenant: str, client_id: str, webhook_id: str) -> bool:
    """Deletes the webhook and, with it, its queued and past deliveries."""
    with engine.begin() as conn:
        gone = conn.execute(delete(webhooks).where(_owned(tenant, client_id), webhooks.c.id == webhook_id))
    return bool(gone.rowcount)


def replace_secrets(engine: Engine, sealer: Sealer, webhook: Webhook, secrets: Sequence[Secret]) -> None:
    with engine.begin() as conn:
        conn.execute(update(webhooks).where(webhooks.c.id == webhook.id).values(secrets=_seal(sealer, secrets)))


def clients_with_webhooks(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(conn.execute(select(webhooks.c.client_id).where(webhooks.c.disabled_at.is_(None)).distinct()).scalars())


def recent_deliveries(engine: Engine, webhook_ids: Sequence[str], per_webhook: int = 10) -> dict[str, list[dict[str, Any]]]:
    """The latest events queued for each webhook and where each one stands."""
    found: dict[str, list[dict[str, Any]]] = {webhook_id: [] for webhook_id in webhook_ids}
    with engine.connect() as conn:
        for webhook_id in webhook_ids:
            rows = conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.webhook_id == webhook_id)
                .order_by(webhook_deliveries.c.id.desc())
                .limit(per_webhook)
            ).all()
            found[webhook_id] = [
                {
                    "message_id": row.message_id,
                    "event_type": row.event_type,
                    "state": row.state,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                    "next_attempt_at": row.next_attempt_at.isoformat() if row.state in OPEN_STATES else None,
                    "created_at": row.created_at.isoformat(),
                    "updated_at": row.updated_at.isoformat(),
                }
                for row in rows
            ]
    return found


def _insert_ignoring_repeats(dialect: str) -> Any:
    elements = [webhook_deliveries.c.webhook_id, webhook_deliveries.c.message_id]
    if dialect == "postgresql":
        return pg_insert(webhook_deliveries).on_conflict_do_nothing(index_elements=elements)
    return sqlite_insert(webhook_deliveries).on_conflict_do_nothing(index_elements=elements)


def enqueue(conn: Connection, client_id: str, event_type: str, message_id: str, body: dict[str, Any], now: datetime) -> int:
    """Queues one event for each of the client's webhooks that wants it, in the caller's
    transaction; the same message id queued twice for a webhook is kept once."""
    rows = conn.execute(
        select(webhooks.c.id, webhooks.c.tenant, webhooks.c.events).where(
            webhooks.c.client_id == client_id, webhooks.c.disabled_at.is_(None)
        )
    ).all()
    wanted = [row for row in rows if event_type in row.events]
    if not wanted:
        return 0
    conn.execute(
        _insert_ignoring_repeats(conn.dialect.name),
        [
            {
                "tenant": row.tenant,
                "webhook_id": row.id,
                "message_id": message_id,
                "event_type": event_type,
                "body": body,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for row in wanted
        ],
    )
    return len(wanted)


@dataclass(frozen=True)
class Claimed:
    """An event a sender holds for one attempt; `attempts` counts this one."""

    id: int
    tenant: str
    message_id: str
    event_type: str
    body: dict[str, Any]
    attempts: int
    webhook: Webhook


@dataclass(frozen=True)
class _HookRow:
    """A webhooks row as read beside a claimed event."""

    id: str
    tenant: str
    client_id: str
    url: str
    events: list[str]
    created_at: datetime
    secrets: str


def lease_due(conn: Connection, table: Table, limit: int, lease: timedelta, now: datetime) -> list[int]:
    """The ids of up to `limit` open rows of `table` that are due, each given one more attempt and
    a lease (a later next_attempt_at) that keeps other senders off it; SKIP LOCKED lets several
    senders claim side by side on PostgreSQL. Webhook events and resident messages share it."""
    due = (
        select(table.c.id)
        .where(table.c.state.in_(OPEN_STATES), table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    ids = list(conn.execute(due).scalars())
    if ids:
        conn.execute(
            update(table).where(table.c.id.in_(ids))
            .values(attempts=table.c.attempts + 1, next_attempt_at=now + lease, updated_at=now)
        )
    return ids


def claim(engine: Engine, sealer: Sealer, limit: int, lease: timedelta, now: datetime) -> list[Claimed]:
    """Takes up to `limit` due events for one attempt each. The lease (a later next_attempt_at)
    keeps other senders off them; SKIP LOCKED lets several senders claim side by side on PostgreSQL."""
    with engine.begin() as conn:
        ids = lease_due(conn, webhook_deliveries, limit, lease, now)
        if not ids:
            return []
        rows = conn.execute(
            select(webhook_deliveries, webhooks.c.url, webhooks.c.secrets, webhooks.c.client_id, webhooks.c.events,
                   webhooks.c.created_at.label("webhook_created_at"))
            .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
            .where(webhook_deliveries.c.id.in_(ids))
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
        ).all()
    claimed = []
    for row in rows:
        hook = _webhook(sealer, _HookRow(row.webhook_id, row.tenant, row.client_id, row.url, row.events, row.webhook_created_at, row.secrets))
        claimed.append(Claimed(row.id, row.tenant, row.message_id, row.event_type, dict(row.body), row.attempts, hook))
    return claimed


def settle(engine: Engine, claimed: Claimed, state: str, error: str | None, next_attempt_at: datetime, now: datetime) -> bool:
    """Records how an attempt went, unless the lease ran out and another sender took the event over."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(webhook_deliveries)
            .where(
                webhook_deliveries.c.id == claimed.id,
                webhook_deliveries.c.attempts == claimed.attempts,
                webhook_deliveries.c.state.in_(OPEN_STATES),
            )
            .values(state=state, last_error=error, next_attempt_at=next_attempt_at, updated_at=now)
        )
    return bool(moved.rowcount)


# -- staff's view (the console): every webhook of a tenant, secrets never read


def _of_tenant(tenant: str | None) -> Any:
    return webhooks.c.tenant == tenant if tenant is not None else webhooks.c.id.is_not(None)


def for_tenant(engine: Engine, tenant: str | None) -> list[dict[str, Any]]:
    """Every webhook of the tenant's clients (every tenant's for None), disabled ones too; the
    secrets are not unsealed."""
    columns = (webhooks.c.id, webhooks.c.tenant, webhooks.c.client_id, webhooks.c.url, webhooks.c.events,
               webhooks.c.created_at, webhooks.c.disabled_at)
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(_of_tenant(tenant)).order_by(webhooks.c.tenant, webhooks.c.client_id, webhooks.c.created_at)).all()
    return [{"id": r.id, "tenant": r.tenant, "client_id": r.client_id, "url": r.url, "events": list(r.events),
             "created_at": r.created_at, "disabled_at": r.disabled_at} for r in rows]


def disable(engine: Engine, tenant: str | None, webhook_id: str, now: datetime) -> dict[str, Any] | None:
    """Stops a webhook: no new events are queued for it and those waiting are marked failed. Its
    client no longer sees it. None when the tenant has no such webhook (or it was disabled already)."""
    with engine.begin() as conn:
        row = conn.execute(select(webhooks.c.tenant, webhooks.c.client_id, webhooks.c.url).where(
            _of_tenant(tenant), webhooks.c.id == webhook_id, webhooks.c.disabled_at.is_(None))).first()
        if row is None:
            return None
        conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(disabled_at=now))
        conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.webhook_id == webhook_id, webhook_deliveries.c.state.in_(OPEN_STATES),
        ).values(state="failed", last_error="the webhook was disabled", updated_at=now))
    return {"tenant": row.tenant, "client_id": row.client_id, "url": row.url}


def delete_for_tenant(engine: Engine, tenant: str | None, webhook_id: str) -> dict[str, Any] | None:
    """Deletes a webhook (disabled or not) with its deliveries; None when the tenant has no such webhook."""
    with engine.begin() as conn:
        row = conn.execute(select(webhooks.c.tenant, webhooks.c.client_id, webhooks.c.url).where(
            _of_tenant(tenant), webhooks.c.id == webhook_id)).first()
        if row is None:
            return None
        conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
    return {"tenant": row.tenant, "client_id": row.client_id, "url": row.url}
