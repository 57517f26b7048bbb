"""Staff's corrections of a parked delivery's answers: stored sealed beside the submission (whose
own payload never changes), audited, and replayed in the same transaction.

The worker sends the newest correction of a delivery instead of the submission's answers
(hub/store/deliveries.py `_payload`); retention and erasure blank a correction with the payload
(hub/store/personal_data.py `_forget`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from hub.store import audit
from hub.store.replay import ParkedFilter, replay_in
from hub.store.tables import corrections, deliveries, submissions


@dataclass(frozen=True)
class Target:
    """A delivery as a correction sees it: its submission, the answers as they came (sealed) and
    the newest correction's (sealed, None without one)."""

    delivery_id: int
    submission_id: int
    reference: str
    tenant: str
    connector: str
    state: str
    attempts: int
    last_error: str | None
    form_id: str
    form_version: int
    received_at: datetime
    original: str | None
    corrected: str | None
    erased_at: datetime | None


def target(engine: Engine, delivery_id: int, tenant: str | None) -> Target | None:
    """The delivery with this id in `tenant` (None: any tenant), or None."""
    newest = (
        select(corrections.c.payload).where(corrections.c.delivery_id == deliveries.c.id)
        .order_by(corrections.c.id.desc()).limit(1).scalar_subquery()
    )
    query = (
        select(
            deliveries.c.id, deliveries.c.submission_id, submissions.c.reference, deliveries.c.tenant, deliveries.c.connector,
            deliveries.c.state, deliveries.c.attempts, deliveries.c.last_error, submissions.c.form_id, submissions.c.form_version,
            submissions.c.received_at, submissions.c.payload, newest.label("corrected"), submissions.c.erased_at,
        )
        .join(submissions, submissions.c.id == deliveries.c.submission_id)
        .where(deliveries.c.id == delivery_id)
    )
    if tenant is not None:
        query = query.where(deliveries.c.tenant == tenant)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return Target(*tuple(row)) if row is not None else None


def history(engine: Engine, delivery_id: int) -> list[dict[str, Any]]:
    """Who corrected the delivery, when and why, oldest first (the answers stay sealed)."""
    query = (
        select(corrections.c.id, corrections.c.actor, corrections.c.reason, corrections.c.created_at)
        .where(corrections.c.delivery_id == delivery_id).order_by(corrections.c.id)
    )
    with engine.connect() as conn:
        return [{"id": r.id, "actor": r.actor, "reason": r.reason, "at": r.created_at.isoformat()} for r in conn.execute(query)]


def correct_and_replay(
    engine: Engine, found: Target, payload: str, diff: str, reason: str, actor: str, audited: dict[str, Any]
) -> dict[str, Any] | None:
    """Stores the correction (sealed `payload` and `diff`), audits it (`audited`: what of the diff
    the append-only log may keep) and replays the delivery, in one transaction. None, storing
    nothing, when the delivery is no longer parked or its submission was erased meanwhile."""
    with engine.begin() as conn:
        done = replay_in(conn, ParkedFilter(ids=(found.delivery_id,), tenant=found.tenant), actor)
        if not done:  # nothing was written
            return None
        correction_id = _insert(conn, found, payload, diff, reason, actor)
        detail = {"reference": found.reference, "connector": found.connector, "correction": correction_id, "reason": reason, **audited}
        audit.record(conn, actor, found.tenant, "delivery.correct", f"delivery:{found.delivery_id}", detail)
    return {**done[0], "correction_id": correction_id}


def _insert(conn: Connection, found: Target, payload: str, diff: str, reason: str, actor: str) -> int:
    inserted = conn.execute(
        insert(corrections).values(
            delivery_id=found.delivery_id, submission_id=found.submission_id, tenant=found.tenant, payload=payload,
            diff=diff, reason=reason, actor=actor, created_at=datetime.now(UTC),
        ).returning(corrections.c.id)
    )
    return int(inserted.scalar_one())
