"""The store's side of the customer record: a signed-in resident's back-office references
(learned, read, forgotten) and their submissions, a page at a time, for "my requests".

A resident is only ever the keyed digest of the portal's `sub`, and always within one tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jmespath
from sqlalchemy import Connection, and_, delete, exists, insert, select

from hub.privacy.sealing import Sealer
from hub.store.submissions import delivery_view
from hub.store.tables import customer_links, deliveries, resident_references, status_events, submissions

SUBJECT_KIND = "sub"


def subjects_of(conn: Connection, tenant: str, submission_id: int) -> list[str]:
    """The digests of the signed-in residents a submission was made by (none or one, in practice)."""
    query = select(customer_links.c.digest).where(
        customer_links.c.tenant == tenant, customer_links.c.submission_id == submission_id, customer_links.c.kind == SUBJECT_KIND
    )
    return list(conn.execute(query).scalars())


def remember(
    conn: Connection, sealer: Sealer, tenant: str, subject: str, found: Mapping[str, str], connector: str,
    submission_id: int | None, now: datetime,
) -> None:
    """Stores each (kind, value) for the resident, the newest replacing an older one of its kind."""
    for kind, value in found.items():
        where = and_(resident_references.c.tenant == tenant, resident_references.c.subject == subject, resident_references.c.kind == kind)
        conn.execute(delete(resident_references).where(where))
        conn.execute(insert(resident_references).values(
            tenant=tenant, subject=subject, kind=kind, value=sealer.seal(value), connector=connector,
            submission_id=submission_id, learned_at=now,
        ))


def references(conn: Connection, sealer: Sealer, tenant: str, subject: str) -> dict[str, dict[str, Any]]:
    """kind -> {value, connector, learned_at} for the resident in this tenant."""
    rows = conn.execute(
        select(resident_references).where(resident_references.c.tenant == tenant, resident_references.c.subject == subject)
    ).all()
    return {
        row.kind: {"value": sealer.open(row.value), "connector": row.connector, "learned_at": row.learned_at}
        for row in rows
    }


def delivered_for(conn: Connection, tenant: str, subject: str, connectors: list[str]) -> list[Any]:
    """The resident's delivered deliveries to these connectors, oldest first, with their submission's
    sealed payload: what a later `learn` pass reads the references from."""
    if not connectors:
        return []
    mine = select(customer_links.c.submission_id).where(
        customer_links.c.tenant == tenant, customer_links.c.kind == SUBJECT_KIND, customer_links.c.digest == subject
    )
    query = (
        select(deliveries.c.connector, deliveries.c.external_reference, deliveries.c.updated_at, submissions.c.id, submissions.c.payload)
        .join(submissions, submissions.c.id == deliveries.c.submission_id)
        .where(
            deliveries.c.tenant == tenant, submissions.c.tenant == tenant, deliveries.c.state == "delivered",
            deliveries.c.connector.in_(connectors), deliveries.c.submission_id.in_(mine),
        )
        .order_by(deliveries.c.updated_at, deliveries.c.id)
    )
    return list(conn.execute(query).all())


def known(conn: Connection, tenant: str, subject: str) -> bool:
    """Whether this tenant has anything of the resident: a submission or a reference."""
    linked = exists().where(
        customer_links.c.tenant == tenant, customer_links.c.kind == SUBJECT_KIND, customer_links.c.digest == subject
    )
    referenced = exists().where(resident_references.c.tenant == tenant, resident_references.c.subject == subject)
    return bool(conn.execute(select(linked | referenced)).scalar())


def forget(conn: Connection, tenant: str, subject: str) -> int:
    """Removes the resident's references and links in this tenant; how many references went."""
    gone = conn.execute(
        delete(resident_references).where(resident_references.c.tenant == tenant, resident_references.c.subject == subject)
    ).rowcount
    conn.execute(delete(customer_links).where(
        customer_links.c.tenant == tenant, customer_links.c.kind == SUBJECT_KIND, customer_links.c.digest == subject
    ))
    return int(gone or 0)


def submissions_page(conn: Connection, tenant: str, subject: str, limit: int, before: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """The resident's submissions through this client's tenant, newest first, `limit` at a time,
    each with its deliveries and the last status a back office gave; and the cursor of the next page."""
    mine = select(customer_links.c.submission_id).where(
        customer_links.c.tenant == tenant, customer_links.c.kind == SUBJECT_KIND, customer_links.c.digest == subject
    )
    query = select(submissions).where(submissions.c.tenant == tenant, submissions.c.id.in_(mine))
    if before is not None:
        query = query.where(submissions.c.id < before)
    rows = conn.execute(query.order_by(submissions.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [row.id for row in rows]
    by_submission: dict[int, list[Any]] = {i: [] for i in ids}
    last_status: dict[int, Any] = {}
    if ids:
        for d in conn.execute(select(deliveries).where(deliveries.c.submission_id.in_(ids)).order_by(deliveries.c.id)).all():
            by_submission[d.submission_id].append(d)
        for e in conn.execute(select(status_events).where(status_events.c.submission_id.in_(ids)).order_by(status_events.c.id)).all():
            last_status[e.submission_id] = e
    items = []
    for row in rows:
        views = [delivery_view(d) for d in by_submission[row.id]]
        event = last_status.get(row.id)
        items.append({
            "reference": row.reference,
            "form_id": row.form_id,
            "received_at": row.received_at.isoformat(),
            "status": _overall(views, event),
            "back_office_status": None if event is None else {
                "status": event.status, "connector": event.connector, "message": event.message,
                "occurred_at": event.occurred_at.isoformat(),
            },
            "references": [
                {"connector": v["connector"], "external_reference": v["external_reference"]} for v in views if v["external_reference"]
            ],
            "deliveries": [{"connector": v["connector"], "state": v["state"]} for v in views],
        })
    return items, (rows[-1].id if more and rows else None)


def _overall(views: list[dict[str, Any]], event: Any) -> str:
    """One word for the account page: the back office's last status, else where delivery stands."""
    if event is not None:
        return str(event.status)
    states = {v["state"] for v in views}
    if not states:
        return "received"
    if states == {"delivered"}:
        return "sent"
    if "parked" in states:
        return "delayed"
    return "sending"


def extract(rules_reply: Mapping[str, str], body: Any) -> dict[str, str]:
    """kind -> value found in `body` by each JMESPath (scalars only; empty values are skipped)."""
    found: dict[str, str] = {}
    for kind, path in rules_reply.items():
        value = jmespath.search(path, body) if body is not None else None
        if value not in (None, "") and not isinstance(value, (dict, list, bool)):
            found[kind] = str(value)
    return found
