"""Residents' ratings of completed requests: one per submission (a second is refused), the
comment sealed like payloads; and the figures per form that staff read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from hub.store.status_events import FINAL_STATUSES
from hub.store.tables import ratings, status_events, submissions


@dataclass(frozen=True)
class Rateable:
    submission_id: int
    form_id: str
    completed: bool
    rated: bool


def find(engine: Engine, tenant: str, reference: str) -> Rateable | None:
    """The tenant's submission, whether a back office has reported it in a final status, and
    whether it has been rated; None for another tenant's or an unknown reference (and an erased one)."""
    final = exists().where(status_events.c.submission_id == submissions.c.id,
                           func.lower(status_events.c.status).in_(sorted(FINAL_STATUSES)))
    rated = exists().where(ratings.c.submission_id == submissions.c.id)
    with engine.connect() as conn:
        row = conn.execute(
            select(submissions.c.id, submissions.c.form_id, final.label("completed"), rated.label("rated"))
            .where(submissions.c.reference == reference, submissions.c.tenant == tenant, submissions.c.erased_at.is_(None))
        ).first()
    return Rateable(row.id, row.form_id, bool(row.completed), bool(row.rated)) if row is not None else None


def add(engine: Engine, tenant: str, found: Rateable, score: int, sealed_comment: str | None, now: datetime) -> bool:
    """Stores the rating; False when the submission already has one (two at once: one wins)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(ratings).values(tenant=tenant, submission_id=found.submission_id, form_id=found.form_id,
                                                score=score, comment=sealed_comment, created_at=now))
    except IntegrityError:
        return False
    return True


def figures(engine: Engine, tenant: str | None, form_id: str | None) -> list[dict[str, Any]]:
    """Per form (of one tenant, or all for None): how many ratings, their mean and how many of each score."""
    query = select(ratings.c.form_id, ratings.c.score, func.count().label("n")).group_by(ratings.c.form_id, ratings.c.score)
    if tenant is not None:
        query = query.where(ratings.c.tenant == tenant)
    if form_id is not None:
        query = query.where(ratings.c.form_id == form_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    forms: dict[str, dict[str, int]] = {}
    for row in rows:
        forms.setdefault(row.form_id, {str(s): 0 for s in range(1, 6)})[str(row.score)] = int(row.n)
    listed = []
    for form, distribution in sorted(forms.items()):
        count = sum(distribution.values())
        mean = sum(int(score) * n for score, n in distribution.items()) / count
        listed.append({"form": form, "count": count, "mean": round(mean, 2), "distribution": distribution})
    return listed
