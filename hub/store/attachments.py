"""The store's side of uploaded attachments: one row per upload, always read within a tenant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, exists, insert, select

from hub.store.tables import attachments


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


def add(conn: Connection, attachment: Attachment) -> None:
    conn.execute(insert(attachments).values(
        id=attachment.id, tenant=attachment.tenant, client_id=attachment.client_id, sha256=attachment.sha256,
        media_type=attachment.media_type, size=attachment.size, scan=attachment.scan, created_at=attachment.created_at,
    ))


def get(conn: Connection, tenant: str, attachment_id: str) -> Attachment | None:
    """The attachment with this id in this tenant; another tenant's is None, as if it did not exist."""
    row = conn.execute(select(attachments).where(attachments.c.id == attachment_id, attachments.c.tenant == tenant)).first()
    if row is None:
        return None
    return Attachment(row.id, row.tenant, row.client_id, row.sha256, row.media_type, row.size, row.scan, row.created_at)


def blob_named(conn: Connection, sha256: str) -> bool:
    """Whether any row (of any tenant) names this blob: a blob so named must not be deleted."""
    return bool(conn.execute(select(exists().where(attachments.c.sha256 == sha256))).scalar())
