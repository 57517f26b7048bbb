"""The store's side of personal data: re-sealing with a new key, purging payloads by retention,
finding one resident's submissions by keyed digest, erasing them, and their audit entries.

Every function is scoped to a tenant where a resident is concerned; batches keep transactions short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, exists, func, insert, select, update

from hub.errors import UnknownKey
from hub.privacy.copies import quoted_forms
from hub.privacy.sealing import Sealer
from hub.store.submissions import delivery_view, scan_wait
from hub.store.tables import (
    OPEN_STATES,
    attachments,
    attempts,
    corrections,
    customer_links,
    deliveries,
    outbox,
    ratings,
    status_events,
    submission_attachments,
    submissions,
    webhooks,
)

# -- re-sealing with the newest key (`hub keys rotate`)


@dataclass
class Resealed:
    """What one pass over a table found: re-sealed, already on the newest key, or unreadable."""

    resealed: int = 0
    current: int = 0
    # references (or webhook ids) whose data no listed key opens
    unreadable: list[str] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.resealed + self.current + len(self.unreadable)


def reseal(
    engine: Engine, sealer: Sealer, what: str, batch: int = 500, progress: Callable[[Resealed], None] | None = None
) -> Resealed:
    """Re-seals every value of `what` ("submissions" or "webhooks") not yet on the newest key,
    `batch` rows per transaction. Safe to stop and run again: rows on the newest key are skipped."""
    table, key, name, column = _SEALED[what]
    done = Resealed()
    after: Any = None
    while True:
        with engine.begin() as conn:
            query = select(key, name, column).where(column.is_not(None)).order_by(key).limit(batch)
            if after is not None:
                query = query.where(key > after)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=table)
            rows = conn.execute(query).all()
            changes: list[dict[str, Any]] = []
            for row_key, label, token in rows:
                if sealer.is_current(token):
                    done.current += 1
                    continue
                try:
                    changes.append({"row_key": row_key, "old": token, "fresh": sealer.rotate(token)})
                except UnknownKey:
                    done.unreadable.append(str(label))
            if changes:
                # only where unchanged meanwhile (an erasure seals with the newest key anyway)
                statement = update(table).where(key == bindparam("row_key"), column == bindparam("old"))
                conn.execute(statement.values({column.name: bindparam("fresh")}), changes)
                done.resealed += len(changes)
        if progress is not None and rows:
            progress(done)
        if len(rows) < batch:
            return done
        after = rows[-1][0]


_SEALED: dict[str, tuple[Table, Any, Any, Any]] = {
    "submissions": (submissions, submissions.c.id, submissions.c.reference, submissions.c.payload),
    "webhooks": (webhooks, webhooks.c.id, webhooks.c.id, webhooks.c.secrets),
    # staff's corrections of a delivery's answers, and the diff each one made (hub/store/corrections.py)
    "corrections": (corrections, corrections.c.id, corrections.c.id, corrections.c.payload),
    "correction-diffs": (corrections, corrections.c.id, corrections.c.id, corrections.c.diff),
    # a photo's GPS position, kept when its form field sets keep_location (hub/store/attachments.py)
    "attachment-locations": (attachments, attachments.c.id, attachments.c.id, attachments.c.location),
}


def relink(engine: Engine, compute: Callable[[Any], list[tuple[str, str]] | None], batch: int = 500) -> tuple[int, int, int]:
    """Rebuilds every stored payload's links from `compute(row)` ((kind, digest) pairs, or None
    when the payload cannot be read), `batch` submissions per transaction. Returns (submissions
    read, links written, unreadable). For submissions stored before the index existed, or after
    HUB_INDEX_KEY changed."""
    read = written = unreadable = 0
    after = 0
    while True:
        with engine.begin() as conn:
            query = select(submissions).where(submissions.c.payload.is_not(None), submissions.c.id > after).order_by(submissions.c.id).limit(batch)
            rows = conn.execute(query).all()
            for row in rows:
                links = compute(row)
                if links is None:
                    unreadable += 1
                    continue
                conn.execute(delete(customer_links).where(customer_links.c.submission_id == row.id))
                if links:
                    conn.execute(
                        insert(customer_links),
                        [{"tenant": row.tenant, "submission_id": row.id, "kind": k, "digest": d} for k, d in sorted(set(links))],
                    )
                written += len(set(links))
            read += len(rows)
        if len(rows) < batch:
            return read, written, unreadable
        after = rows[-1].id


# -- retention


def unpurged_forms(engine: Engine) -> list[tuple[str, str]]:
    """Every (tenant, form) that still has a payload to consider."""
    query = select(submissions.c.tenant, submissions.c.form_id).where(submissions.c.purged_at.is_(None)).distinct()
    with engine.connect() as conn:
        return sorted((str(t), str(f)) for t, f in conn.execute(query).all())


def _due(tenant: str, form_id: str, cutoff: datetime) -> Any:
    """Submissions whose deliveries all succeeded (or that had none, or were cancelled with their
    unpaid payment: docs/payments.md), the last before `cutoff`."""
    mine = deliveries.c.submission_id == submissions.c.id
    finished = select(func.max(deliveries.c.updated_at)).where(mine).scalar_subquery()
    unfinished = exists().where(mine, deliveries.c.state.not_in(("delivered", "cancelled")))
    return and_(
        submissions.c.tenant == tenant,
        submissions.c.form_id == form_id,
        submissions.c.purged_at.is_(None),
        # a delivery finishes after its submission arrived: this narrows the scan to old rows by index
        submissions.c.received_at < cutoff,
        ~unfinished,
        func.coalesce(finished, submissions.c.received_at) < cutoff,
    )


def purge(engine: Engine, tenant: str, form_id: str, cutoff: datetime, now: datetime, dry_run: bool = False, batch: int = 500) -> int:
    """Purges (or, dry, counts) the tenant's payloads of this form that are due: the payload and
    the resident's links go, the timeline keeps its statuses without their messages."""
    if dry_run:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(submissions).where(_due(tenant, form_id, cutoff))).scalar_one())
    purged = 0
    while True:
        with engine.begin() as conn:
            query = select(submissions.c.id).where(_due(tenant, form_id, cutoff)).limit(batch)
            if conn.dialect.name == "postgresql":
                # two workers' schedules may overlap: each takes rows the other has not
                query = query.with_for_update(of=submissions, skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if ids:
                conn.execute(update(submissions).where(submissions.c.id.in_(ids)).values(payload=None, purged_at=now))
                _forget(conn, ids)
        purged += len(ids)
        if len(ids) < batch:
            return purged


def _forget(conn: Connection, submission_ids: Sequence[int]) -> None:
    """What ties the submissions to a person beyond the payload: links, and back-office messages."""
    conn.execute(delete(customer_links).where(customer_links.c.submission_id.in_(submission_ids)))
    conn.execute(update(status_events).where(status_events.c.submission_id.in_(submission_ids)).values(message=None))
    # staff's corrections hold the resident's answers too
    conn.execute(update(corrections).where(corrections.c.submission_id.in_(submission_ids)).values(payload=None, diff=None))
    # a rating's comment may name the resident (the score stays in the figures)
    conn.execute(update(ratings).where(ratings.c.submission_id.in_(submission_ids)).values(comment=None))
    # a photo's kept GPS position says where the resident stood (the row itself goes later, with
    # its blob, once no live submission names it: hub.privacy.retention.forget_attachments)
    named = select(submission_attachments.c.attachment_id).where(submission_attachments.c.submission_id.in_(submission_ids))
    conn.execute(update(attachments).where(attachments.c.id.in_(named), attachments.c.location.is_not(None)).values(location=None))


# -- one resident's submissions


def linked(conn: Connection, tenant: str, kind: str, digest: str, lock: bool = False) -> list[Any]:
    """The tenant's submissions linked to this digest, oldest first (locked for an erasure)."""
    query = (
        select(submissions)
        .where(
            submissions.c.tenant == tenant,
            submissions.c.id.in_(
                select(customer_links.c.submission_id).where(
                    customer_links.c.tenant == tenant, customer_links.c.kind == kind, customer_links.c.digest == digest
                )
            ),
        )
        .order_by(submissions.c.id)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=submissions)
    return list(conn.execute(query).all())


def by_reference(conn: Connection, reference: str, tenant: str | None) -> Any:
    """One submission's row, or None; `tenant` None only for staff who work for every tenant."""
    query = select(submissions).where(submissions.c.reference == reference)
    if tenant is not None:
        query = query.where(submissions.c.tenant == tenant)
    return conn.execute(query).first()


def summary(conn: Connection, row: Any, scanner_configured: bool = False) -> dict[str, Any]:
    """A stored submission for staff and for the resident's own export: its metadata, deliveries and
    timeline; `payload` is left None for the caller, who decides what of it may be shown.
    `scanner_configured`: deliveries held for the virus scan say so (`scan_wait`)."""
    return {
        "reference": row.reference,
        "form_id": row.form_id,
        "form_version": row.form_version,
        "received_at": row.received_at.isoformat(),
        "purged_at": row.purged_at.isoformat() if row.purged_at else None,
        "erased_at": row.erased_at.isoformat() if row.erased_at else None,
        "payload": None,
        **history(conn, row.id, scanner_configured),
    }


def history(conn: Connection, submission_id: int, scanner_configured: bool = False) -> dict[str, list[dict[str, Any]]]:
    """A submission's deliveries and its timeline, as staff and the resident may see them."""
    rows = conn.execute(select(deliveries).where(deliveries.c.submission_id == submission_id).order_by(deliveries.c.id)).all()
    held = scan_wait(conn, submission_id, rows) if scanner_configured else None
    events = conn.execute(
        select(status_events).where(status_events.c.submission_id == submission_id).order_by(status_events.c.id)
    ).all()
    return {
        "deliveries": [delivery_view(d, held) for d in rows],
        "timeline": [
            {
                "status": e.status,
                "message": e.message,
                "connector": e.connector,
                "source": e.source,
                "occurred_at": e.occurred_at.isoformat(),
                "recorded_at": e.recorded_at.isoformat(),
            }
            # in the order the hub recorded them (a back office's clock may be wrong)
            for e in events
        ],
    }


def erase(
    conn: Connection, submission_id: int, sealed_payload: str | None, now: datetime, reason: str, values: Sequence[str] = ()
) -> int:
    """Replaces the payload with what is left after removing personal data, forgets the links and
    messages, blanks `values` (the removed answers, in every quoted form) where delivery errors
    quoted them, parks every delivery still open (so nothing half-erased is sent) and gives every
    parked one `reason` in place of its last error, and drops their outbox rows. Broker messages
    carry delivery ids only; the worker skips (or parks as erased) whatever they name. Returns how
    many deliveries were open."""
    conn.execute(update(submissions).where(submissions.c.id == submission_id).values(payload=sealed_payload, erased_at=now))
    _forget(conn, [submission_id])
    _scrub_errors(conn, submission_id, values)
    mine = deliveries.c.submission_id == submission_id
    open_ids = list(conn.execute(select(deliveries.c.id).where(mine, deliveries.c.state.in_(OPEN_STATES))).scalars())
    if open_ids:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(open_ids), deliveries.c.state.in_(OPEN_STATES))
            .values(state="parked", last_error=reason, next_attempt_at=None, updated_at=now)
        )
    # parked before: its last error (a back office's words) may quote the resident in a form no
    # scrub knows, and the reason is what a replay or a reader must see from now on
    conn.execute(update(deliveries).where(mine, deliveries.c.state == "parked").values(last_error=reason))
    conn.execute(delete(outbox).where(outbox.c.delivery_id.in_(select(deliveries.c.id).where(mine))))
    return len(open_ids)


REDACTED = "[erased]"


def _scrub_errors(conn: Connection, submission_id: int, values: Sequence[str]) -> None:
    """A back office's or a mapping's error may quote an answer (a date, an address it refused),
    as typed or JSON-escaped."""
    wanted = quoted_forms(values)
    if not wanted:
        return
    mine = select(deliveries.c.id).where(deliveries.c.submission_id == submission_id)
    for table, column in ((deliveries, deliveries.c.last_error), (attempts, attempts.c.error)):
        key = table.c.id
        where = key.in_(mine) if table is deliveries else attempts.c.delivery_id.in_(mine)
        for row_key, text in conn.execute(select(key, column).where(where, column.is_not(None))).all():
            scrubbed = text
            for value in wanted:
                scrubbed = scrubbed.replace(value, REDACTED)
            if scrubbed != text:
                conn.execute(update(table).where(key == row_key).values({column.name: scrubbed}))
