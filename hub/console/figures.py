"""The dashboard's figures, by SQL over the hub's own tables: per form and per destination
(connector), for a window of time, how many submissions came in, how their deliveries stand,
how many went straight through, and how long they took to reach the back office.

"Straight through": delivered at the first attempt, never retried, parked or replayed. "Time to
back office": from the hub receiving the submission to the delivery's success (the same moment
the timeline shows as delivered). Medians and 95th percentiles are nearest-rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, case, func, select, tuple_

from hub.store.tables import deliveries, submissions

STATES = ("pending", "retrying", "delivered", "parked")


@dataclass
class Line:
    """One row of a dashboard table: a form or a connector, in one window."""

    name: str
    received: int = 0
    states: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    straight_through: int = 0
    seconds: list[float] = field(default_factory=list)
    # worked out by PostgreSQL (percentile_disc, the same nearest rank) instead of from `seconds`
    computed: dict[int, float | None] | None = None

    @property
    def deliveries(self) -> int:
        return sum(self.states.values())

    @property
    def straight_through_rate(self) -> float | None:
        return self.straight_through / self.deliveries if self.deliveries else None

    @property
    def median_seconds(self) -> float | None:
        return self.computed.get(50) if self.computed is not None else percentile(self.seconds, 50)

    @property
    def p95_seconds(self) -> float | None:
        return self.computed.get(95) if self.computed is not None else percentile(self.seconds, 95)


@dataclass(frozen=True)
class Figures:
    since: datetime
    forms: list[Line]
    connectors: list[Line]


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least pct% of them at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def figures(engine: Engine, since: datetime, tenant: str | None) -> Figures:
    """Every form's and connector's line for submissions received since `since` (one tenant, or
    every tenant for None)."""
    window = [submissions.c.received_at >= since]
    if tenant is not None:
        window.append(submissions.c.tenant == tenant)
    # a delivery is made with its submission (intake's one transaction): the same window on it lets
    # PostgreSQL read the window's deliveries by index (tenant, created_at), not all of them
    joined_window = [*window, deliveries.c.created_at >= since]
    if tenant is not None:
        joined_window.append(deliveries.c.tenant == tenant)
    straight = case((and_(deliveries.c.state == "delivered", deliveries.c.attempts == 1, deliveries.c.attempts_base == 0), 1), else_=0)
    forms: dict[str, Line] = {}
    connectors: dict[str, Line] = {}
    with engine.connect() as conn:
        received = conn.execute(
            select(submissions.c.form_id, func.count()).where(*window).group_by(submissions.c.form_id)
        ).all()
        for form_id, count in received:
            forms[form_id] = Line(form_id, received=count)
        joined = submissions.join(deliveries, deliveries.c.submission_id == submissions.c.id)
        by_state = conn.execute(
            select(submissions.c.form_id, deliveries.c.connector, deliveries.c.state, func.count(), func.sum(straight))
            .select_from(joined).where(*joined_window)
            .group_by(submissions.c.form_id, deliveries.c.connector, deliveries.c.state)
        ).all()
        for form_id, connector, state, count, through in by_state:
            for line in (forms.setdefault(form_id, Line(form_id)), connectors.setdefault(connector, Line(connector))):
                line.states[state] = line.states.get(state, 0) + count
                line.straight_through += int(through or 0)
        # a connector "received" each submission routed to it: one delivery each
        for line in connectors.values():
            line.received = line.deliveries
        if conn.dialect.name == "postgresql":
            # at a million submissions the window's times stay in the database: two nearest-rank
            # percentiles per form and per connector (percentile_disc), not every row to Python
            took = func.greatest(0, func.extract("epoch", deliveries.c.updated_at - submissions.c.received_at))
            # one pass for both tables: GROUPING SETS, per form and per connector
            for form_id, connector, median, p95 in conn.execute(
                select(submissions.c.form_id, deliveries.c.connector,
                       func.percentile_disc(0.5).within_group(took), func.percentile_disc(0.95).within_group(took))
                .select_from(joined).where(*joined_window, deliveries.c.state == "delivered")
                .group_by(func.grouping_sets(tuple_(submissions.c.form_id), tuple_(deliveries.c.connector)))
            ).all():
                line = forms[form_id] if form_id is not None else connectors[connector]
                line.computed = {50: float(median), 95: float(p95)}
            for line in (*forms.values(), *connectors.values()):
                if line.computed is None:
                    line.computed = {}
            timed: Sequence[Any] = ()
        else:
            timed = conn.execute(
                select(submissions.c.form_id, deliveries.c.connector, submissions.c.received_at, deliveries.c.updated_at)
                .select_from(joined).where(*joined_window, deliveries.c.state == "delivered")
            ).all()
    for form_id, connector, received_at, delivered_at in timed:
        took_seconds = max(0.0, (delivered_at - received_at).total_seconds())
        forms[form_id].seconds.append(took_seconds)
        connectors[connector].seconds.append(took_seconds)
    return Figures(since, sorted(forms.values(), key=lambda x: x.name), sorted(connectors.values(), key=lambda x: x.name))


def as_row(line: Line) -> dict[str, Any]:
    """A line as the template shows it."""
    rate = line.straight_through_rate
    return {
        "name": line.name,
        "received": line.received,
        **line.states,
        "straight_through": "–" if rate is None else f"{rate:.0%}",
        "median": duration(line.median_seconds),
        "p95": duration(line.p95_seconds),
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
