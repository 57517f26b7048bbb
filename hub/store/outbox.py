"""The relay's side of the store: claim outbox rows that are due, and remove them once published.

On PostgreSQL rows are claimed with SKIP LOCKED, so several relays share the work without
publishing a row twice; SQLite serialises writers anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, insert, select

from hub.store.db import replanned
from hub.store.tables import outbox


@dataclass(frozen=True)
class OutboxRow:
    id: int
    delivery_id: int
    connector: str


# on PostgreSQL, fixed statements with array parameters: compiled and prepared once, not per batch
# planned afresh each time (db.replanned): the outbox swings from empty to a backlog of 100,000
_CLAIM = (
    "SELECT id, delivery_id, connector FROM outbox WHERE available_at <= %(now)s AND connector = ANY(%(connectors)s) "
    "ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
)
_REMOVE = "DELETE FROM outbox WHERE id = ANY(%(ids)s)"


def claim_due(conn: Connection, limit: int, connectors: Sequence[str]) -> list[OutboxRow]:
    """Due rows of configured connectors; a removed connector's rows stay for an operator."""
    if conn.dialect.name == "postgresql":
        found = replanned(conn, _CLAIM, {"now": datetime.now(UTC), "connectors": list(connectors), "limit": limit})
        return [OutboxRow(*row) for row in found.fetchall()]
    rows = conn.execute(
        select(outbox.c.id, outbox.c.delivery_id, outbox.c.connector)
        .where(outbox.c.available_at <= datetime.now(UTC), outbox.c.connector.in_(connectors))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [OutboxRow(r.id, r.delivery_id, r.connector) for r in rows]


def remove(conn: Connection, ids: Sequence[int]) -> None:
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        replanned(conn, _REMOVE, {"ids": list(ids)})
    else:
        conn.execute(delete(outbox).where(outbox.c.id.in_(ids)))


def backlog(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def hold(conn: Connection, delivery_id: int, connector: str, until: datetime) -> None:
    """An outbox row the relay publishes once `until` has come: how a delivery waits where the
    broker has no delay queues (the in-process one)."""
    conn.execute(insert(outbox).values(delivery_id=delivery_id, connector=connector, available_at=until))
