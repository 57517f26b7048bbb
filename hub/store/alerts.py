"""What the e-mail alerts and digests have told each tenant, shared by every worker process
(table `alert_state`), and the figures a daily digest reports.

An event adds to `pending`; a mail takes the pending events with one guarded UPDATE (`claim`), so
of several processes exactly one sends, and after it the row's window holds further events back
until `window_until`, when one summary takes them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.store.tables import alert_state, attempts, deliveries, submissions

DIGEST = "digest"
# the connector column of a tenant's digest row
ALL_CONNECTORS = "*"


@dataclass(frozen=True)
class Key:
    tenant: str
    connector: str
    kind: str


@dataclass(frozen=True)
class Pending:
    """Events for one key, as they are added (several of one burst at once)."""

    key: Key
    count: int
    first_at: datetime
    last_at: datetime
    reason: str | None


@dataclass(frozen=True)
class Claim:
    """The events one mail took: how many, from when to when, the last reason given."""

    key: Key
    count: int
    first_at: datetime
    last_at: datetime
    reason: str | None
    window_until: datetime


def _insert(engine: Engine) -> Any:
    return (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(alert_state)


def _where(key: Key) -> Any:
    return and_(alert_state.c.tenant == key.tenant, alert_state.c.connector == key.connector, alert_state.c.kind == key.kind)


def add(engine: Engine, events: Iterable[Pending]) -> None:
    """Counts events in, one statement per key (an upsert: two processes may add at once)."""
    with engine.begin() as conn:
        for event in events:
            statement = _insert(engine).values(
                tenant=event.key.tenant, connector=event.key.connector, kind=event.key.kind, pending=event.count,
                pending_since=event.first_at, last_event_at=event.last_at, last_reason=event.reason, sent=0,
            )
            statement = statement.on_conflict_do_update(
                index_elements=[alert_state.c.tenant, alert_state.c.connector, alert_state.c.kind],
                set_={
                    "pending": alert_state.c.pending + statement.excluded.pending,
                    "pending_since": func.coalesce(alert_state.c.pending_since, statement.excluded.pending_since),
                    "last_event_at": statement.excluded.last_event_at,
                    "last_reason": func.coalesce(statement.excluded.last_reason, alert_state.c.last_reason),
                },
            )
            conn.execute(statement)


def claim(engine: Engine, key: Key, now: datetime, window: timedelta) -> Claim | None:
    """Takes the key's pending events for one mail, and opens a window until `now + window` in which
    further events wait; None when there is nothing pending or the window is still open (or another
    process took them first: the UPDATE only succeeds while the window is closed)."""
    with engine.connect() as conn:
        row = conn.execute(select(alert_state).where(_where(key))).first()
    if row is None or row.pending <= 0 or (row.window_until is not None and row.window_until > now):
        return None
    until = now + window
    with engine.begin() as conn:
        taken = conn.execute(
            update(alert_state)
            .where(
                _where(key),
                alert_state.c.pending >= row.pending,
                or_(alert_state.c.window_until.is_(None), alert_state.c.window_until <= now),
            )
            .values(
                pending=alert_state.c.pending - row.pending,
                pending_since=case((alert_state.c.pending == row.pending, None), else_=alert_state.c.last_event_at),
                window_until=until,
            )
        ).rowcount
    if not taken:
        return None
    return Claim(key, row.pending, row.pending_since or now, row.last_event_at or now, row.last_reason, until)


def sent(engine: Engine, key: Key, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(alert_state).where(_where(key)).values(sent=alert_state.c.sent + 1, last_sent_at=now, last_error=None))


def release(engine: Engine, taken: Claim, error: str) -> None:
    """Gives a claim whose mail failed back: its events are pending again and the window closed, so
    the next flush tries again."""
    with engine.begin() as conn:
        conn.execute(
            update(alert_state)
            .where(_where(taken.key))
            .values(
                pending=alert_state.c.pending + taken.count,
                pending_since=func.coalesce(alert_state.c.pending_since, taken.first_at),
                window_until=None,
                last_error=error[:500],
            )
        )


def due(engine: Engine, now: datetime) -> list[Key]:
    """Keys with events waiting whose window is over: each gets one summary."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(alert_state.c.tenant, alert_state.c.connector, alert_state.c.kind).where(
                alert_state.c.kind != DIGEST,
                alert_state.c.pending > 0,
                or_(alert_state.c.window_until.is_(None), alert_state.c.window_until <= now),
            )
        ).all()
    return [Key(r.tenant, r.connector, r.kind) for r in rows]


def state(engine: Engine, key: Key) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(alert_state).where(_where(key))).first()


# -- the daily digest ---------------------------------------------------------------------------


def claim_digest(engine: Engine, tenant: str, day: str) -> str | bool | None:
    """Takes the tenant's digest for `day` (YYYY-MM-DD): the day sent before it (None if never) for
    the one caller that took it, False when it was sent (or is being sent) already."""
    key = Key(tenant, ALL_CONNECTORS, DIGEST)
    with engine.begin() as conn:
        conn.execute(_insert(engine).values(tenant=tenant, connector=ALL_CONNECTORS, kind=DIGEST, pending=0, sent=0)
                     .on_conflict_do_nothing())
    with engine.connect() as conn:
        before = conn.execute(select(alert_state.c.period).where(_where(key))).scalar()
    if before is not None and before >= day:
        return False
    with engine.begin() as conn:
        period = alert_state.c.period
        guard = period.is_(None) if before is None else period == before
        taken = conn.execute(update(alert_state).where(_where(key), guard).values(period=day)).rowcount
    return before if taken else False


def release_digest(engine: Engine, tenant: str, day: str, before: str | None, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(alert_state)
            .where(_where(Key(tenant, ALL_CONNECTORS, DIGEST)), alert_state.c.period == day)
            .values(period=before, last_error=error[:500])
        )


@dataclass(frozen=True)
class ConnectorDay:
    connector: str
    delivered: int  # attempts that delivered in the day
    failed: int  # attempts that failed in the day (retried or parked)
    parked: int  # deliveries parked in the day
    parked_now: int
    oldest_parked_at: datetime | None


@dataclass(frozen=True)
class DigestFigures:
    tenant: str
    start: datetime
    end: datetime
    received: int
    connectors: list[ConnectorDay]

    @property
    def parked_now(self) -> int:
        return sum(c.parked_now for c in self.connectors)

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.connectors)

    @property
    def oldest_parked_at(self) -> datetime | None:
        times = [c.oldest_parked_at for c in self.connectors if c.oldest_parked_at is not None]
        return min(times) if times else None


def digest_figures(engine: Engine, tenant: str, start: datetime, end: datetime) -> DigestFigures:
    """The tenant's day [start, end): submissions received, attempts delivered and failed, deliveries
    parked, per connector; and what is parked now, with the oldest."""
    in_day = and_(attempts.c.finished_at >= start, attempts.c.finished_at < end)
    with engine.connect() as conn:
        received = conn.execute(
            select(func.count()).select_from(submissions)
            .where(submissions.c.tenant == tenant, submissions.c.received_at >= start, submissions.c.received_at < end)
        ).scalar_one()
        tried = conn.execute(
            select(deliveries.c.connector, attempts.c.outcome, func.count())
            .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
            .where(attempts.c.tenant == tenant, in_day)
            .group_by(deliveries.c.connector, attempts.c.outcome)
        ).all()
        parked_day = conn.execute(
            select(deliveries.c.connector, func.count())
            .where(deliveries.c.tenant == tenant, deliveries.c.state == "parked",
                   deliveries.c.updated_at >= start, deliveries.c.updated_at < end)
            .group_by(deliveries.c.connector)
        ).all()
        parked_now = conn.execute(
            select(deliveries.c.connector, func.count(), func.min(deliveries.c.updated_at))
            .where(deliveries.c.tenant == tenant, deliveries.c.state == "parked")
            .group_by(deliveries.c.connector)
        ).all()
    names = sorted({r[0] for r in tried} | {r[0] for r in parked_day} | {r[0] for r in parked_now})
    delivered = {r[0]: r[2] for r in tried if r[1] == "delivered"}
    failed: dict[str, int] = {}
    for name, outcome, count in tried:
        if outcome != "delivered":
            failed[name] = failed.get(name, 0) + count
    parked = {r[0]: r[1] for r in parked_day}
    now = {r[0]: (r[1], r[2]) for r in parked_now}
    rows = [
        ConnectorDay(name, delivered.get(name, 0), failed.get(name, 0), parked.get(name, 0),
                     now.get(name, (0, None))[0], _aware(now.get(name, (0, None))[1]))
        for name in names
    ]
    return DigestFigures(tenant, start, end, received, rows)


def _aware(value: Any) -> datetime | None:
    # min() over a UTC column comes back without the column's type on SQLite: naive, or even a string
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
