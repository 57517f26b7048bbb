"""Reading the audit log for staff: filtered by actor, action, reference and time, newest first,
a page at a time (keyset on the entry id), or every matching entry in batches for an export.

Nothing here writes: entries are appended by hub/store/audit.py only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, String, cast, or_, select
from sqlalchemy.sql import Select

from hub.store.tables import audit_log

# an export reads this many entries per query, so 100,000 rows never sit in memory at once
BATCH = 1000


@dataclass(frozen=True)
class AuditQuery:
    # None: every tenant's entries and the hub-wide ones (staff working for every tenant)
    tenant: str | None = None
    actor: str | None = None
    action: str | None = None
    # a submission reference or a target (client:kiosk, delivery:12): the target, or detail.reference
    reference: str | None = None
    since: datetime | None = None
    # exclusive
    until: datetime | None = None


def _select(query: AuditQuery, before_id: int | None) -> Select[Any]:
    chosen = select(audit_log).order_by(audit_log.c.id.desc())
    if query.tenant is not None:
        chosen = chosen.where(audit_log.c.tenant == query.tenant)
    if query.actor:
        chosen = chosen.where(audit_log.c.actor == query.actor)
    if query.action:
        chosen = chosen.where(audit_log.c.action == query.action)
    if query.reference:
        ref = query.reference
        chosen = chosen.where(or_(
            audit_log.c.target == ref,
            audit_log.c.target.endswith(":" + ref, autoescape=True),
            # both SQLite's JSON text and PostgreSQL's jsonb print `"key": "value"` like this
            cast(audit_log.c.detail, String).contains(f'"reference": "{ref}"', autoescape=True),
        ))
    if query.since is not None:
        chosen = chosen.where(audit_log.c.at >= query.since)
    if query.until is not None:
        chosen = chosen.where(audit_log.c.at < query.until)
    if before_id is not None:
        chosen = chosen.where(audit_log.c.id < before_id)
    return chosen


def _entry(row: Any) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "actor": row.actor, "tenant": row.tenant, "action": row.action,
            "target": row.target, "detail": row.detail}


def page(engine: Engine, query: AuditQuery, before_id: int | None = None, size: int = 50) -> tuple[list[dict[str, Any]], int | None]:
    """Up to `size` entries, newest first, older than `before_id`; and the id to ask for the
    next page with (None when this is the last)."""
    with engine.connect() as conn:
        rows = conn.execute(_select(query, before_id).limit(size + 1)).all()
    entries = [_entry(r) for r in rows[:size]]
    return entries, (entries[-1]["id"] if len(rows) > size else None)


def every(engine: Engine, query: AuditQuery, batch: int = BATCH) -> Iterator[dict[str, Any]]:
    """Every matching entry, newest first, read `batch` at a time (no connection is held between batches)."""
    before: int | None = None
    while True:
        with engine.connect() as conn:
            rows = conn.execute(_select(query, before).limit(batch)).all()
        yield from (_entry(r) for r in rows)
        if len(rows) < batch:
            return
        before = rows[-1].id
