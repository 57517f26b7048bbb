"""Channel-shift savings, per tenant, form and month (UTC), by one SQL GROUP BY.

"Straight into a back office": a submission with at least one delivery, every one of which is
`delivered` and was never replayed by hand (`attempts_base` is 0; a replay sets it to the attempts
made before). A delivery that parked is only delivered again by a replay, so "never replayed"
also means "never parked". Automatic retries within the retry budget still count as straight in.

For each (tenant, form, month) with n such submissions:
- re-keying minutes avoided = n × the form's `rekeying_minutes` (config `savings`, default 5);
- money saved = n × (unit cost of the channel the form replaced − unit cost online), with the
  unit costs of config `savings` `unit_costs` (defaults: Socitm Insight channel-cost
  benchmarking, £10.53 face to face, £3.00 phone, £0.08 online).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, select

from hub.config.files import HubConfig
from hub.store.tables import deliveries, submissions


@dataclass(frozen=True)
class Saving:
    tenant: str
    form: str
    month: str  # YYYY-MM, UTC
    straight_in: int
    replaces: str
    rekeying_minutes: float
    money_saved: float

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "form": self.form, "month": self.month, "straight_in": self.straight_in,
                "replaces": self.replaces, "rekeying_minutes_avoided": self.rekeying_minutes,
                "money_saved_gbp": self.money_saved}


def month_start(month: str) -> datetime:
    """'2025-03' as the first instant of that month, UTC; ValueError when it is not one."""
    year, _, mm = month.partition("-")
    if len(year) != 4 or len(mm) != 2:
        raise ValueError(month)
    return datetime.combine(date(int(year), int(mm), 1), datetime.min.time(), UTC)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def savings(engine: Engine, config: HubConfig, tenant: str | None, month_from: str | None = None,
            month_to: str | None = None, form: str | None = None) -> list[Saving]:
    """The figures, one tenant (or all for None), months inclusive, optionally one form."""
    if engine.dialect.name == "postgresql":
        month = func.to_char(func.timezone("UTC", submissions.c.received_at), "YYYY-MM")
    else:
        month = func.strftime("%Y-%m", submissions.c.received_at)
    straight = case((and_(deliveries.c.state == "delivered", deliveries.c.attempts_base == 0), 1), else_=0)
    per_submission = (
        select(submissions.c.tenant, submissions.c.form_id, month.label("month"))
        .select_from(submissions.join(deliveries, deliveries.c.submission_id == submissions.c.id))
        .group_by(submissions.c.id, submissions.c.tenant, submissions.c.form_id, submissions.c.received_at)
        .having(func.count() == func.sum(straight))
    )
    if tenant is not None:
        per_submission = per_submission.where(submissions.c.tenant == tenant)
    if form:
        per_submission = per_submission.where(submissions.c.form_id == form)
    if month_from:
        per_submission = per_submission.where(submissions.c.received_at >= month_start(month_from))
    if month_to:
        per_submission = per_submission.where(submissions.c.received_at < next_month(month_start(month_to)))
    inner = per_submission.subquery()
    query = (select(inner.c.tenant, inner.c.form_id, inner.c.month, func.count())
             .group_by(inner.c.tenant, inner.c.form_id, inner.c.month)
             .order_by(inner.c.month, inner.c.tenant, inner.c.form_id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    costs = config.unit_costs
    found = []
    for tenant_id, form_id, month_text, count in rows:
        entry = config.savings_for(form_id)
        per_case = getattr(costs, entry.replaces) - costs.online
        found.append(Saving(tenant_id, form_id, month_text, count, entry.replaces,
                            round(count * entry.rekeying_minutes, 2), round(count * per_case, 2)))
    return found
