"""The store's side of uploaded attachments: one row per upload, always read within a tenant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, exists, insert, select, update

from hub.store.tables import attachments, deliveries, submission_attachments, submissions

CLEAN, UNSCANNED, QUARANTINED = "clean", "unscanned", "quarantined"


@dataclass(frozen=True)
class Attachment:
    id: str
    tenant: str
    client_id: str
    sha256: str
    media_type: str
    size: int
    scan: str
    created_at: datetime
    # the photo's GPS position, sealed (hub.privacy.sealing), when its form field sets keep_location
    location: str | None = None


def add(conn: Connection, attachment: Attachment) -> None:
    conn.execute(insert(attachments).values(
        id=attachment.id, tenant=attachment.tenant, client_id=attachment.client_id, sha256=attachment.sha256,
        media_type=attachment.media_type, size=attachment.size, scan=attachment.scan, created_at=attachment.created_at,
        location=attachment.location,
    ))


def _row(row: Any) -> Attachment:
    return Attachment(row.id, row.tenant, row.client_id, row.sha256, row.media_type, row.size, row.scan, row.created_at, row.location)


def get(conn: Connection, tenant: str, attachment_id: str) -> Attachment | None:
    """The attachment with this id in this tenant; another tenant's is None, as if it did not exist."""
    row = conn.execute(select(attachments).where(attachments.c.id == attachment_id, attachments.c.tenant == tenant)).first()
    return None if row is None else _row(row)


def by_id(conn: Connection, attachment_id: str) -> Attachment | None:
    """Any tenant's attachment: only for a link the hub signed (the signature names the id)."""
    row = conn.execute(select(attachments).where(attachments.c.id == attachment_id)).first()
    return None if row is None else _row(row)


def many(conn: Connection, tenant: str, ids: Iterable[str]) -> dict[str, Attachment]:
    """The tenant's attachments among these ids; ids of another tenant or of none are left out."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(select(attachments).where(attachments.c.id.in_(wanted), attachments.c.tenant == tenant)).all()
    return {row.id: _row(row) for row in rows}


def of_submission(conn: Connection, submission_id: int) -> list[tuple[str, Attachment]]:
    """(field, attachment) for every attachment the submission names, in a stable order."""
    rows = conn.execute(
        select(submission_attachments.c.field, attachments)
        .join(attachments, attachments.c.id == submission_attachments.c.attachment_id)
        .where(submission_attachments.c.submission_id == submission_id)
        .order_by(submission_attachments.c.field, attachments.c.created_at, attachments.c.id)
    ).all()
    return [(row.field, _row(row)) for row in rows]


def of_delivery(engine: Engine, delivery_id: int) -> list[tuple[str, Attachment]]:
    """The attachments of the delivery's submission (a worker's view)."""
    with engine.connect() as conn:
        submission_id = conn.execute(select(deliveries.c.submission_id).where(deliveries.c.id == delivery_id)).scalar()
        return [] if submission_id is None else of_submission(conn, int(submission_id))


def links_for(submission_id: int, attachment_fields: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"submission_id": submission_id, "attachment_id": a, "field": f} for f, a in attachment_fields]


def unscanned(conn: Connection, limit: int = 100) -> list[Attachment]:
    rows = conn.execute(select(attachments).where(attachments.c.scan == UNSCANNED).order_by(attachments.c.created_at).limit(limit)).all()
    return [_row(row) for row in rows]


def set_scan(conn: Connection, sha256: str, state: str) -> int:
    """Every still-unscanned row of these bytes gets the verdict (the same bytes, the same verdict)."""
    result = conn.execute(update(attachments).where(attachments.c.sha256 == sha256, attachments.c.scan == UNSCANNED).values(scan=state))
    return int(result.rowcount or 0)


def forget_finished(conn: Connection) -> list[str]:
    """Deletes the attachments whose every submission was purged or erased (with their links);
    returns the sha256 of each blob no row names any more, for the caller to delete after commit."""
    link = submission_attachments
    live = (
        select(link.c.attachment_id)
        .join(submissions, submissions.c.id == link.c.submission_id)
        .where(and_(submissions.c.purged_at.is_(None), submissions.c.erased_at.is_(None)))
    )
    named = select(link.c.attachment_id).distinct()
    rows = conn.execute(select(attachments.c.id, attachments.c.sha256).where(attachments.c.id.in_(named), attachments.c.id.not_in(live))).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    conn.execute(delete(link).where(link.c.attachment_id.in_(ids)))
    conn.execute(delete(attachments).where(attachments.c.id.in_(ids)))
    shas = sorted({row.sha256 for row in rows})
    still = set(conn.execute(select(attachments.c.sha256).where(attachments.c.sha256.in_(shas))).scalars())
    return [sha for sha in shas if sha not in still]


def forget_unlinked(conn: Connection, created_before: datetime | None = None, ids: Iterable[str] | None = None,
                    dry_run: bool = False) -> tuple[int, list[str]]:
    """Deletes the uploads no submission names: those created before `created_before` (abandoned),
    or those among `ids` (files of a request that was refused). Returns how many rows went and the
    sha256 of each blob no row names any more, for the caller to delete after commit; a dry run
    only counts the rows."""
    link = submission_attachments
    query = select(attachments.c.id, attachments.c.sha256).where(~exists().where(link.c.attachment_id == attachments.c.id))
    if created_before is not None:
        query = query.where(attachments.c.created_at < created_before)
    if ids is not None:
        query = query.where(attachments.c.id.in_(sorted(set(ids))))
    rows = conn.execute(query).all()
    if not rows or dry_run:
        return len(rows), []
    gone = [row.id for row in rows]
    # still unlinked at the moment of deleting (a submission may have named one meanwhile)
    deleted = conn.execute(delete(attachments).where(
        attachments.c.id.in_(gone), ~exists().where(link.c.attachment_id == attachments.c.id))).rowcount
    shas = sorted({row.sha256 for row in rows})
    still = set(conn.execute(select(attachments.c.sha256).where(attachments.c.sha256.in_(shas))).scalars())
    return int(deleted or 0), [sha for sha in shas if sha not in still]


def quarantined_or_unscanned(attachments_found: Iterable[Attachment]) -> tuple[list[Attachment], list[Attachment]]:
    found = list(attachments_found)
    return [a for a in found if a.scan == QUARANTINED], [a for a in found if a.scan == UNSCANNED]


def named(files: Sequence[tuple[str, Attachment]], chosen: Sequence[Attachment]) -> str:
    """The chosen files by id and field, for a reason staff and the portal read: "att_x (photos)"."""
    return ", ".join(f"{a.id} ({field})" for field, a in files if a in chosen)


def scan_hold(files: Sequence[tuple[str, Attachment]]) -> str | None:
    """Why the worker holds an open delivery of these files while a virus scanner is configured
    (hub.delivery.attempt `_scanned`): a file not scanned yet and none quarantined (which parks
    it instead). None: not held for the scan."""
    quarantined, unscanned = quarantined_or_unscanned(a for _, a in files)
    if quarantined or not unscanned:
        return None
    return (f"the virus scanner has not checked {named(files, unscanned)} yet (it did not answer when the file came); "
            "the hub scans it again and sends the record once it passes")



def blob_named(conn: Connection, sha256: str) -> bool:
    """Whether any row (of any tenant) names this blob: a blob so named must not be deleted."""
    return bool(conn.execute(select(exists().where(attachments.c.sha256 == sha256))).scalar())
