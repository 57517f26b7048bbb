"""What back offices said about the records the hub delivered: status events, pushed or polled,
each recorded once (its dedupe key) and queued for the submitting client's webhooks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.store import webhooks
from hub.store.tables import deliveries, status_events, submissions

# statuses after which a back office will not change the record again: polling stops there
FINAL_STATUSES = frozenset({"closed", "completed", "complete", "cancelled", "canceled", "rejected", "resolved", "withdrawn"})


def is_final(status: str) -> bool:
    return status.strip().lower() in FINAL_STATUSES


def dedupe_key(*parts: object) -> str:
    """A fixed-length key from the parts that make two updates the same update."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


@dataclass(frozen=True)
class Target:
    """The delivery a status update is about, and whose submission it belongs to."""

    delivery_id: int
    submission_id: int
    tenant: str
    client_id: str
    connector: str
    reference: str
    external_reference: str | None


def _targets() -> Any:
    return select(
        deliveries.c.id.label("delivery_id"),
        submissions.c.id.label("submission_id"),
        submissions.c.tenant,
        submissions.c.client_id,
        deliveries.c.connector,
        submissions.c.reference,
        deliveries.c.external_reference,
    ).join(submissions, submissions.c.id == deliveries.c.submission_id)


def find_target(engine: Engine, connector: str, external_reference: str | None, reference: str | None) -> Target | None:
    """The connector's delivery with this back-office reference and/or hub reference (both must
    match when both are given); the latest if a back office reused a reference."""
    query = _targets().where(deliveries.c.connector == connector).order_by(deliveries.c.id.desc()).limit(1)
    if external_reference is not None:
        query = query.where(deliveries.c.external_reference == external_reference)
    if reference is not None:
        query = query.where(submissions.c.reference == reference)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Target(**row._asdict()) if row is not None else None


@dataclass(frozen=True)
class Recorded:
    id: int
    reference: str
    connector: str | None
    external_reference: str | None
    status: str
    message: str | None
    occurred_at: datetime
    recorded_at: datetime
    source: str
    # False when the same update had been recorded before
    created: bool


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        return pg_insert(status_events).on_conflict_do_nothing(index_elements=[status_events.c.dedupe_key])
    return sqlite_insert(status_events).on_conflict_do_nothing(index_elements=[status_events.c.dedupe_key])


def event_body(target: Target, status: str, occurred_at: datetime, source: str) -> dict[str, Any]:
    """What a webhook says of a status change: references, connector, status and times, never
    the back office's free-text message (it may name the resident)."""
    return {
        "reference": target.reference,
        "connector": target.connector,
        "external_reference": target.external_reference,
        "status": status,
        "final": is_final(status),
        "occurred_at": occurred_at.isoformat(),
        "source": source,
    }


def record(
    engine: Engine, target: Target, status: str, message: str | None, occurred_at: datetime, source: str, key: str
) -> Recorded:
    """Stores the update once (a repeat finds the first) and, in the same transaction, queues a
    `submission.status_changed` event for the client's webhooks."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        new_id = conn.execute(
            _insert(conn.dialect.name)
            .values(
                tenant=target.tenant,
                submission_id=target.submission_id,
                delivery_id=target.delivery_id,
                connector=target.connector,
                status=status,
                message=message,
                occurred_at=occurred_at,
                recorded_at=now,
                source=source,
                dedupe_key=key,
            )
            .returning(status_events.c.id)
        ).scalar()
        if new_id is not None:
            body = {"type": "submission.status_changed", "timestamp": now.isoformat(), "data": event_body(target, status, occurred_at, source)}
            webhooks.enqueue(conn, target.client_id, "submission.status_changed", f"msg_status_{new_id}", body, now)
        row = conn.execute(select(status_events).where(status_events.c.dedupe_key == key)).one()
    return Recorded(
        row.id, target.reference, row.connector, target.external_reference, row.status, row.message,
        row.occurred_at, row.recorded_at, row.source, created=new_id is not None,
    )


@dataclass(frozen=True)
class Latest:
    id: int
    status: str
    message: str | None


@dataclass(frozen=True)
class Pollable:
    target: Target
    latest: Latest | None


def pollable(engine: Engine, connector: str, received_since: datetime, after_id: int, limit: int) -> list[Pollable]:
    """The connector's delivered records with a back-office reference, received since the given
    time and not yet in a final status: up to `limit`, by delivery id after `after_id` (so a
    poller walks through them all over successive runs)."""
    final = exists().where(
        status_events.c.delivery_id == deliveries.c.id, func.lower(status_events.c.status).in_(sorted(FINAL_STATUSES))
    )
    query = (
        _targets()
        .where(
            deliveries.c.connector == connector,
            deliveries.c.state == "delivered",
            deliveries.c.external_reference.is_not(None),
            deliveries.c.id > after_id,
            submissions.c.received_at >= received_since,
            ~final,
        )
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        targets = [Target(**row._asdict()) for row in conn.execute(query)]
        latest = _latest(conn, [t.delivery_id for t in targets])
    return [Pollable(t, latest.get(t.delivery_id)) for t in targets]


def _latest(conn: Any, delivery_ids: Sequence[int]) -> dict[int, Latest]:
    if not delivery_ids:
        return {}
    newest = (
        select(func.max(status_events.c.id))
        .where(status_events.c.delivery_id.in_(delivery_ids))
        .group_by(status_events.c.delivery_id)
    )
    rows = conn.execute(
        select(status_events.c.id, status_events.c.delivery_id, status_events.c.status, status_events.c.message)
        .where(status_events.c.id.in_(newest))
    ).all()
    return {row.delivery_id: Latest(row.id, row.status, row.message) for row in rows}
