"""How each connector has fared lately, from its delivery attempts: the last success, the last
failure and its reason, and the share of attempts that failed over the last hour and day.

Read for the console's connectors pages; the reasons are stored already scrubbed by the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, case, func, select

from hub.store.tables import attempts, deliveries

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(hours=24)}


@dataclass(frozen=True)
class Rate:
    attempts: int
    failed: int

    @property
    def share(self) -> float | None:
        return self.failed / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Fared:
    connector: str
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_failure: str | None
    # by WINDOWS key
    rates: dict[str, Rate]


def fared(engine: Engine, connectors: Iterable[str], now: datetime, tenant: str | None = None) -> dict[str, Fared]:
    """Each named connector's record, over one tenant's deliveries (every tenant's for None)."""
    names = list(connectors)
    joined = attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id)
    scope: list[ColumnElement[bool]] = [deliveries.c.connector.in_(names)]
    if tenant is not None:
        scope.append(attempts.c.tenant == tenant)
    failed = case((attempts.c.outcome != "delivered", 1), else_=0)
    with engine.connect() as conn:
        succeeded = dict(conn.execute(
            select(deliveries.c.connector, func.max(attempts.c.finished_at)).select_from(joined)
            .where(*scope, attempts.c.outcome == "delivered").group_by(deliveries.c.connector)
        ).all())
        rates: dict[str, dict[str, Rate]] = {name: {} for name in names}
        for window, length in WINDOWS.items():
            counted = conn.execute(
                select(deliveries.c.connector, func.count(), func.sum(failed)).select_from(joined)
                .where(*scope, attempts.c.finished_at >= now - length).group_by(deliveries.c.connector)
            ).all()
            found = {name: Rate(int(total), int(bad or 0)) for name, total, bad in counted}
            for name in names:
                rates[name][window] = found.get(name, Rate(0, 0))
        last_failures: dict[str, tuple[datetime, str | None]] = {}
        for name in names:
            row = conn.execute(
                select(attempts.c.finished_at, attempts.c.error).select_from(joined)
                .where(*scope, deliveries.c.connector == name, attempts.c.outcome != "delivered")
                .order_by(attempts.c.finished_at.desc(), attempts.c.id.desc()).limit(1)
            ).first()
            if row is not None:
                last_failures[name] = (row.finished_at, row.error)
    shown = {}
    for name in names:
        failed_at, reason = last_failures.get(name, (None, None))
        shown[name] = Fared(name, succeeded.get(name), failed_at, reason, rates[name])
    return shown
