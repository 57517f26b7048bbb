"""The console's submission search: by the references a member of staff is given (the hub's,
the portal's, a back office's), form, delivery state and date received; never by personal data.
Newest first, a page at a time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, exists, func, select

from hub.store.tables import deliveries, submissions

PAGE_SIZE = 25
# counted exactly up to here, then "more than": a count of every match would read a council's
# whole history (bench/console.py: 450 ms at 1M submissions) for a figure nobody pages through
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Query:
    reference: str | None = None
    portal_reference: str | None = None
    back_office_reference: str | None = None
    form: str | None = None
    state: str | None = None
    received_from: date | None = None
    received_to: date | None = None
    # None: every tenant (a platform admin)
    tenant: str | None = None


@dataclass(frozen=True)
class Found:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    # more matches than COUNT_CAP: `total` is the cap
    capped: bool = False


def _where(q: Query) -> list[Any]:
    where: list[Any] = []
    if q.tenant is not None:
        where.append(submissions.c.tenant == q.tenant)
    if q.reference:
        where.append(submissions.c.reference == q.reference)
    if q.portal_reference:
        where.append(submissions.c.idempotency_key == q.portal_reference)
    if q.form:
        where.append(submissions.c.form_id == q.form)
    if q.received_from:
        where.append(submissions.c.received_at >= datetime.combine(q.received_from, time(), UTC))
    if q.received_to:
        # the whole of the last day named
        where.append(submissions.c.received_at < datetime.combine(q.received_to + timedelta(days=1), time(), UTC))
    if q.back_office_reference or q.state:
        inner = [deliveries.c.submission_id == submissions.c.id]
        if q.back_office_reference:
            inner.append(deliveries.c.external_reference == q.back_office_reference)
        if q.state:
            inner.append(deliveries.c.state == q.state)
        where.append(exists().where(*inner))
    return where


def search(engine: Engine, q: Query, page: int = 1) -> Found:
    where = _where(q)
    with engine.connect() as conn:
        matching = select(submissions.c.id).where(*where).limit(COUNT_CAP + 1).subquery()
        total = conn.execute(select(func.count()).select_from(matching)).scalar_one()
        capped = total > COUNT_CAP
        total = min(total, COUNT_CAP)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, page), pages)
        rows = conn.execute(
            select(submissions.c.id, submissions.c.reference, submissions.c.tenant, submissions.c.form_id, submissions.c.received_at)
            .where(*where).order_by(submissions.c.received_at.desc(), submissions.c.id.desc())
            .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
        ).all()
        states: dict[int, list[str]] = defaultdict(list)
        if rows:
            for submission_id, connector, state in conn.execute(
                select(deliveries.c.submission_id, deliveries.c.connector, deliveries.c.state)
                .where(deliveries.c.submission_id.in_([r.id for r in rows])).order_by(deliveries.c.id)
            ).all():
                states[submission_id].append(f"{connector}: {state}")
    found = [
        {"reference": r.reference, "tenant": r.tenant, "form_id": r.form_id, "received_at": r.received_at, "deliveries": states[r.id]}
        for r in rows
    ]
    return Found(found, total, page, pages, capped)
