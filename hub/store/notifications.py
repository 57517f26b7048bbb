"""Residents' messages waiting for GOV.UK Notify: found from what the hub already holds (a stored
submission, a final status event), queued once per submission and kind, claimed, sent, settled.

Queuing reads the submissions and status events of the last `WINDOW` rather than adding a row in
intake's transaction, so the intake path is untouched; the unique (submission, kind) pair makes a
repeated scan, or several workers scanning at once, queue each message once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.store.status_events import FINAL_STATUSES
from hub.store.tables import OPEN_STATES, notifications, status_events, submissions
from hub.store.webhooks import lease_due

# how far back a scan looks: a message more than a day late is not worth sending
WINDOW = timedelta(hours=24)


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    elements = [notifications.c.submission_id, notifications.c.kind]
    statement = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(notifications)
    return int(conn.execute(statement.on_conflict_do_nothing(index_elements=elements), rows).rowcount or 0)


def _row(tenant: str, submission_id: int, kind: str, status: str | None, now: datetime) -> dict[str, Any]:
    return {"tenant": tenant, "submission_id": submission_id, "kind": kind, "status": status, "state": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}


def queue_due(engine: Engine, ack_forms: set[str], closed_forms: set[str], now: datetime, limit: int = 500) -> int:
    """Queues an acknowledgement for each recent submission of `ack_forms`, and a closing message
    for each of `closed_forms` a back office reported in a final status; returns how many."""
    since = now - WINDOW
    queued = 0
    with engine.begin() as conn:
        if ack_forms:
            missing = ~exists().where(notifications.c.submission_id == submissions.c.id, notifications.c.kind == "acknowledgement")
            received = conn.execute(
                select(submissions.c.id, submissions.c.tenant)
                .where(submissions.c.form_id.in_(sorted(ack_forms)), submissions.c.received_at >= since,
                       submissions.c.erased_at.is_(None), missing)
                .order_by(submissions.c.id).limit(limit)
            ).all()
            queued += _insert(conn, [_row(r.tenant, r.id, "acknowledgement", None, now) for r in received])
        if closed_forms:
            missing = ~exists().where(notifications.c.submission_id == status_events.c.submission_id, notifications.c.kind == "closed")
            closed = conn.execute(
                select(status_events.c.submission_id, status_events.c.tenant, func.min(status_events.c.status).label("status"))
                .join(submissions, submissions.c.id == status_events.c.submission_id)
                .where(submissions.c.form_id.in_(sorted(closed_forms)), status_events.c.recorded_at >= since,
                       func.lower(status_events.c.status).in_(sorted(FINAL_STATUSES)), submissions.c.erased_at.is_(None), missing)
                .group_by(status_events.c.submission_id, status_events.c.tenant)
                .limit(limit)
            ).all()
            queued += _insert(conn, [_row(r.tenant, r.submission_id, "closed", r.status, now) for r in closed])
    return queued


@dataclass(frozen=True)
class Claimed:
    """A message a sender holds for one attempt (`attempts` counts this one), with its submission."""

    id: int
    tenant: str
    kind: str
    status: str | None
    attempts: int
    reference: str
    form_id: str
    form_version: int
    received_at: datetime
    payload: str | None


def claim(engine: Engine, limit: int, lease: timedelta, now: datetime) -> list[Claimed]:
    """Up to `limit` due messages for one attempt each; the lease keeps other senders off them
    and SKIP LOCKED lets several claim side by side on PostgreSQL."""
    with engine.begin() as conn:
        ids = lease_due(conn, notifications, limit, lease, now)
        if not ids:
            return []
        rows = conn.execute(
            select(notifications.c.id, notifications.c.tenant, notifications.c.kind, notifications.c.status,
                   notifications.c.attempts, submissions.c.reference, submissions.c.form_id, submissions.c.form_version,
                   submissions.c.received_at, submissions.c.payload)
            .join(submissions, submissions.c.id == notifications.c.submission_id)
            .where(notifications.c.id.in_(ids))
            .order_by(notifications.c.id)
        ).all()
    return [Claimed(**row._asdict()) for row in rows]


def settle(engine: Engine, claimed: Claimed, state: str, now: datetime, next_attempt_at: datetime | None = None,
           error: str | None = None, channel: str | None = None, notify_id: str | None = None) -> bool:
    """Records how an attempt went, unless the lease ran out and another sender took the message."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(notifications)
            .where(notifications.c.id == claimed.id, notifications.c.attempts == claimed.attempts,
                   notifications.c.state.in_(OPEN_STATES))
            .values(state=state, last_error=error, next_attempt_at=next_attempt_at or now, updated_at=now,
                    channel=channel, notify_id=notify_id)
        )
    return bool(moved.rowcount)


def for_submission(engine: Engine, tenant: str, reference: str) -> list[dict[str, Any]]:
    """Where each message to the resident stands, for the submission's status (no address in it)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(notifications)
            .join(submissions, submissions.c.id == notifications.c.submission_id)
            .where(submissions.c.reference == reference, submissions.c.tenant == tenant)
            .order_by(notifications.c.id)
        ).all()
    return [
        {
            "kind": row.kind,
            "state": row.state,
            "channel": row.channel,
            "attempts": row.attempts,
            "last_error": row.last_error,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.state in OPEN_STATES else None,
            "updated_at": row.updated_at.isoformat(),
        }
        for row in rows
    ]
