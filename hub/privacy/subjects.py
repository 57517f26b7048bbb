"""Subject access and erasure: every submission one resident made to one tenant, found by the
keyed digest of their e-mail address, exported as JSON or stripped of their personal data.

Both are written to the audit log by reference, never by the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from hub.errors import UnknownKey

# (re-exported: callers and tests know the reason from here)
from hub.privacy.copies import ERASED_REASON as ERASED_REASON
from hub.privacy.retention import forget_attachments
from hub.privacy.sealing import subject_digest
from hub.residents.record import resident_digest
from hub.runtime import Runtime
from hub.store import attachments as attachment_rows
from hub.store import audit, personal_data, residents


def plausible_email(value: str) -> bool:
    """Enough of an address to look one up with (intake checked the real ones)."""
    local, at, domain = value.strip().rpartition("@")
    return bool(at and local and "." in domain and len(value) <= 320 and not any(c.isspace() for c in value.strip()))


def export(runtime: Runtime, tenant: str, email: str, actor: str) -> dict[str, Any]:
    """Everything the hub holds about this resident in this tenant, as the resident may have it."""
    digest = subject_digest(runtime.index_key, "email", email)
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        rows = personal_data.linked(conn, tenant, "email", digest)
        found = [_record(runtime, conn, row) for row in rows]
        detail = {"submissions": len(found), "references": [row.reference for row in rows]}
        audit.record(conn, actor, tenant, "subject.export", "subject", detail, at=now)
    return {"tenant": tenant, "email": email.strip(), "exported_at": now.isoformat(), "submissions": found}


def _record(runtime: Runtime, conn: Connection, row: Any) -> dict[str, Any]:
    record = personal_data.summary(conn, row)
    if row.payload is not None:
        try:
            record["payload"] = runtime.sealer.open(row.payload)
        except UnknownKey as error:
            record["payload_error"] = str(error)
    record["attachments"] = [_attachment(runtime, name, found) for name, found in attachment_rows.of_submission(conn, row.id)]
    return record


def _attachment(runtime: Runtime, field: str, found: attachment_rows.Attachment) -> dict[str, Any]:
    """One file the submission names, as the resident may have it: its metadata and, where its
    field kept it, the photo's GPS position."""
    shown: dict[str, Any] = {"field": field, "id": found.id, "media_type": found.media_type, "size": found.size,
                             "sha256": found.sha256, "created_at": found.created_at.isoformat(), "location": None}
    if found.location is not None:
        try:
            shown["location"] = runtime.sealer.open(found.location)
        except UnknownKey as error:
            shown["location_error"] = str(error)
    return shown


@dataclass(frozen=True)
class Erased:
    reference: str
    form_id: str
    # "personal data removed", "whole payload removed" (form unknown, or unreadable) or "already purged"
    payload: str
    deliveries_parked: int


def erase(runtime: Runtime, tenant: str, email: str, actor: str) -> list[Erased]:
    """Removes this resident's personal data from every one of their submissions in this tenant,
    in one transaction; each erased submission gets its own audit entry."""
    digest = subject_digest(runtime.index_key, "email", email)
    with runtime.engine.begin() as conn:
        done = _erase_linked(runtime, conn, tenant, "email", digest, actor, datetime.now(UTC))
    forget_attachments(runtime.engine, runtime.attachment_store)  # their files, once the erasure committed
    return done


@dataclass(frozen=True)
class ResidentErased:
    submissions: list[Erased]
    references_removed: int


def erase_resident(runtime: Runtime, tenant: str, subject: str, actor: str) -> ResidentErased:
    """Erases a signed-in resident (the portal's `sub`) in this tenant, in one transaction: the
    personal data of every submission they made, their customer record and its links. The audit
    entry names the count, never the subject."""
    digest = resident_digest(runtime.index_key, subject)
    now = datetime.now(UTC)
    with runtime.engine.begin() as conn:
        done = _erase_linked(runtime, conn, tenant, residents.SUBJECT_KIND, digest, actor, now)
        removed = residents.forget(conn, tenant, digest)
        detail = {"submissions": len(done), "references_removed": removed}
        audit.record(conn, actor, tenant, "subject.erase_record", "resident", detail, at=now)
    forget_attachments(runtime.engine, runtime.attachment_store)
    return ResidentErased(done, removed)


def _erase_linked(runtime: Runtime, conn: Connection, tenant: str, kind: str, digest: str, actor: str, now: datetime) -> list[Erased]:
    done: list[Erased] = []
    for row in personal_data.linked(conn, tenant, kind, digest, lock=True):
        sealed, what, values = _stripped(runtime, row)
        parked = personal_data.erase(conn, row.id, sealed, now, ERASED_REASON, values)
        item = Erased(row.reference, row.form_id, what, parked)
        detail = {"form": row.form_id, "payload": what, "deliveries_parked": parked}
        audit.record(conn, actor, tenant, "subject.erase", row.reference, detail, at=now)
        done.append(item)
    return done


def reindex(runtime: Runtime, batch: int = 500) -> tuple[int, int, int]:
    """Links every stored submission to its resident again, from its payload: for submissions
    received before the index existed, or after HUB_INDEX_KEY changed. Safe to run again."""

    def links(row: Any) -> list[tuple[str, str]] | None:
        form = runtime.forms.get(row.form_id, row.form_version)
        try:
            payload = runtime.sealer.open(row.payload)
        except UnknownKey:
            return None
        found = form.subject_identifiers(payload) if form is not None else []
        return [(kind, subject_digest(runtime.index_key, kind, value)) for kind, value in found]

    return personal_data.relink(runtime.engine, links, batch)


def _stripped(runtime: Runtime, row: Any) -> tuple[str | None, str, list[str]]:
    """The payload sealed again without its x-pii fields, what was done to it, and the values removed."""
    if row.payload is None:
        return None, "already purged", []
    form = runtime.forms.get(row.form_id, row.form_version)
    try:
        payload = runtime.sealer.open(row.payload)
    except UnknownKey:
        return None, "whole payload removed (no key opens it)", []
    if form is None:
        # without its schema the hub cannot tell personal answers from the rest: keep none
        return None, "whole payload removed (form unknown)", []
    return runtime.sealer.seal(form.without_personal_data(payload)), "personal data removed", form.pii_values(payload)
