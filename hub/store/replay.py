"""Parked deliveries, found by filter, and replayed: back to pending with a fresh retry budget.

The worker maps from the original payload again, so a mapping fixed since the delivery
parked takes effect. Every replay is written to the audit log: who, when, which delivery. A
delivery whose submission was erased at the resident's request is never replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, insert, select, update

from hub.store import audit
from hub.store.tables import deliveries, outbox, submissions


@dataclass(frozen=True)
class ParkedFilter:
    ids: tuple[int, ...] = ()
    connector: str | None = None
    since: datetime | None = None
    reason_contains: str | None = None
    # None: every tenant (an operator working for all of them)
    tenant: str | None = None
    limit: int = 10_000
    form: str | None = None
    # parked (or updated) before this moment
    until: datetime | None = None
    # what is listed; only parked deliveries are ever replayed ("retrying": failed, still trying)
    states: tuple[str, ...] = ("parked",)


def _query(flt: ParkedFilter, replayable: bool = False) -> Select[Any]:
    """The parked deliveries the filter selects; `replayable`, only those not erased."""
    query = (
        select(
            deliveries.c.id,
            submissions.c.reference,
            deliveries.c.tenant,
            deliveries.c.connector,
            deliveries.c.attempts,
            deliveries.c.last_error,
            deliveries.c.updated_at,
            deliveries.c.state,
            submissions.c.form_id,
        )
        .join(submissions, submissions.c.id == deliveries.c.submission_id)
        .where(deliveries.c.state.in_(("parked",) if replayable else flt.states))
        .order_by(deliveries.c.id)
        .limit(flt.limit)
    )
    if flt.ids:
        query = query.where(deliveries.c.id.in_(flt.ids))
    if flt.connector:
        query = query.where(deliveries.c.connector == flt.connector)
    if flt.since:
        query = query.where(deliveries.c.updated_at >= flt.since)
    if flt.until:
        query = query.where(deliveries.c.updated_at < flt.until)
    if flt.form:
        query = query.where(submissions.c.form_id == flt.form)
    if flt.reason_contains:
        query = query.where(deliveries.c.last_error.contains(flt.reason_contains, autoescape=True))
    if flt.tenant is not None:
        query = query.where(deliveries.c.tenant == flt.tenant)
    if replayable:
        query = query.where(submissions.c.erased_at.is_(None))
    return query


def _as_dict(row: Any) -> dict[str, Any]:
    return {
        "delivery_id": row.id,
        "reference": row.reference,
        "tenant": row.tenant,
        "connector": row.connector,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "parked_at": row.updated_at.isoformat(),
        "state": row.state,
        "form_id": row.form_id,
    }


def find_parked(engine: Engine, flt: ParkedFilter) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [_as_dict(r) for r in conn.execute(_query(flt)).all()]


def replay(engine: Engine, flt: ParkedFilter, actor: str, dry_run: bool = False) -> list[dict[str, Any]]:
    """Re-queues the parked deliveries the filter selects, leaving out those erased at the
    resident's request; with dry_run, only says which."""
    if dry_run:
        with engine.connect() as conn:
            return [_as_dict(r) for r in conn.execute(_query(flt, replayable=True)).all()]
    with engine.begin() as conn:
        return replay_in(conn, flt, actor)


def replay_in(conn: Connection, flt: ParkedFilter, actor: str) -> list[dict[str, Any]]:
    """`replay` inside the caller's transaction (a correction is stored with its replay)."""
    now = datetime.now(UTC)
    # the submission is locked too, so an erasure cannot slip in between this and the commit
    rows = conn.execute(_query(flt, replayable=True).with_for_update(of=(deliveries, submissions))).all()
    chosen = [_as_dict(r) for r in rows]
    for item in chosen:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == item["delivery_id"], deliveries.c.state == "parked")
            .values(state="pending", attempts_base=deliveries.c.attempts, next_attempt_at=None, updated_at=now)
        )
        conn.execute(insert(outbox).values(delivery_id=item["delivery_id"], connector=item["connector"], available_at=now))
        # not the last error: the audit log is append-only, and a back office's words may quote
        # the resident where no later erasure could blank them
        audit.record(
            conn,
            actor,
            item["tenant"],
            "replay",
            f"delivery:{item['delivery_id']}",
            {"reference": item["reference"], "connector": item["connector"], "attempts": item["attempts"]},
        )
    return chosen


def erased_among(engine: Engine, flt: ParkedFilter) -> list[int]:
    """The parked deliveries the filter selects whose submission was erased (so replay left them)."""
    query = _query(flt).where(submissions.c.erased_at.is_not(None))
    with engine.connect() as conn:
        return [int(r.id) for r in conn.execute(query).all()]


def audit_entries(engine: Engine, action: str | None = None, tenant: str | None = None) -> list[dict[str, Any]]:
    """Kept for callers written before the audit log had its own module."""
    return audit.entries(engine, audit.AuditFilter(action=action, tenant=tenant))


def counts_by_connector(
    engine: Engine, tenant: str | None = None, states: tuple[str, ...] | None = None
) -> dict[str, dict[str, int]]:
    """How many deliveries each connector has in each state (for one tenant, or all; only
    `states` if given: the few waiting ones are read by index, not every delivery)."""
    query = select(deliveries.c.connector, deliveries.c.state, func.count()).group_by(deliveries.c.connector, deliveries.c.state)
    if states is not None:
        query = query.where(deliveries.c.state.in_(states))
    if tenant is not None:
        query = query.where(deliveries.c.tenant == tenant)
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for connector, state, count in conn.execute(query).all():
            found.setdefault(connector, {})[state] = int(count)
    return found
