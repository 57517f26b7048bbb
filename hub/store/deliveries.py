"""The worker's side of the store: load a delivery, then record its outcome and its attempt.

Each outcome is one transaction, and only changes a delivery that is still pending or retrying,
so a redelivered message for a finished delivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, case, func, insert, select, update

from hub.store.db import KeptConnection, driver, one_statement
from hub.store.tables import OPEN_STATES, attempts, corrections, deliveries, submissions


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: int
    connector: str
    state: str
    attempts: int
    attempts_base: int
    next_attempt_at: datetime | None
    reference: str
    tenant: str
    # the front end that sent the submission (its webhooks hear of the outcome)
    client_id: str
    form_id: str
    form_version: int
    # sealed (hub.privacy.sealing): the newest staff correction's answers where there is one
    # (hub/store/corrections.py), else the submission's; None once retention or an erasure removed it
    payload: str | None
    received_at: datetime
    # the resident's data was erased: nothing of this submission may be sent any more
    erased_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@contextmanager
def _grouped(engine: Engine, kept: KeptConnection | None) -> Iterator[Connection]:
    """The connection for a grouped load or record: `kept`, or on PostgreSQL one set up the same
    way for this call (its scans off: see KeptConnection)."""
    if kept is None and engine.dialect.name == "postgresql":
        kept = KeptConnection(engine)
        try:
            with kept() as conn:
                yield conn
        finally:
            kept.close()
    elif kept is not None:
        with kept() as conn:
            yield conn
    else:
        with one_statement(engine) as conn:
            yield conn


def load_many(engine: Engine, delivery_ids: Sequence[int], kept: KeptConnection | None = None) -> list[DeliveryJob | None]:
    """The deliveries with these ids, in the same order (None for an unknown id): one query, on
    `kept` when given (PostgreSQL only; without it, on a connection kept for this call)."""
    with _grouped(engine, kept) as conn:
        if engine.dialect.name == "postgresql":
            # straight to psycopg, as the text needs no compiling (half the client's CPU per batch)
            rows = driver(conn).execute(_LOAD, {"ids": list(set(delivery_ids))}).fetchall()
        else:
            rows = conn.execute(_job_query().where(deliveries.c.id.in_(set(delivery_ids)))).all()
    found = {row[0]: DeliveryJob(*row) for row in rows}
    return [found.get(delivery_id) for delivery_id in delivery_ids]


def _job_query() -> Any:
    return select(
        deliveries.c.id.label("delivery_id"),
        deliveries.c.connector,
        deliveries.c.state,
        deliveries.c.attempts,
        deliveries.c.attempts_base,
        deliveries.c.next_attempt_at,
        submissions.c.reference,
        submissions.c.tenant,
        submissions.c.client_id,
        submissions.c.form_id,
        submissions.c.form_version,
        _payload().label("payload"),
        submissions.c.received_at,
        submissions.c.erased_at,
    ).join(submissions, submissions.c.id == deliveries.c.submission_id)


def _payload() -> Any:
    """The answers to send: the delivery's newest correction, else the submission's own (none
    once the submission's payload is purged, whatever a correction holds)."""
    corrected = (
        select(corrections.c.payload).where(corrections.c.delivery_id == deliveries.c.id)
        .order_by(corrections.c.id.desc()).limit(1).scalar_subquery()
    )
    return case((submissions.c.payload.is_(None), None), else_=func.coalesce(corrected, submissions.c.payload))


def load(engine: Engine, delivery_id: int) -> DeliveryJob | None:
    with engine.connect() as conn:
        row = conn.execute(_job_query().where(deliveries.c.id == delivery_id)).first()
    return DeliveryJob(**row._asdict()) if row is not None else None


def _finish(
    conn: Connection,
    delivery_id: int,
    started_at: datetime,
    outcome: str,
    values: dict[str, Any],
    error: str | None,
) -> int | None:
    """Moves an open delivery on and writes its attempt; returns the attempt number, or None."""
    now = datetime.now(UTC)
    number = conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.state.in_(OPEN_STATES))
        .values(attempts=deliveries.c.attempts + 1, updated_at=now, **values)
        .returning(deliveries.c.attempts, deliveries.c.tenant)
    ).first()
    if number is None:
        return None
    number, tenant = number
    conn.execute(
        insert(attempts).values(
            delivery_id=delivery_id,
            tenant=tenant,
            number=number,
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            error=error,
        )
    )
    return int(number)


# writes what a finished delivery tells others (a client's webhook event) in the transaction that
# records the outcome, given the attempt's number: both are committed, or neither
Notice = Callable[[Connection, int], None]


def record_delivered(engine: Engine, delivery_id: int, started_at: datetime, external_reference: str | None,
                     notice: Notice | None = None) -> int | None:
    with engine.begin() as conn:
        number = _finish(
            conn,
            delivery_id,
            started_at,
            "delivered",
            {"state": "delivered", "external_reference": external_reference, "next_attempt_at": None},
            None,
        )
        if number is not None and notice is not None:
            notice(conn, number)
        return number


# psycopg's own statements (its %(name)s parameters), in DeliveryJob's field order
_LOAD = """
    SELECT d.id AS delivery_id, d.connector, d.state, d.attempts, d.attempts_base, d.next_attempt_at,
           s.reference, s.tenant, s.client_id, s.form_id, s.form_version,
           -- the newest staff correction's answers, else the submission's (see _payload)
           CASE WHEN s.payload IS NULL THEN NULL ELSE COALESCE(
               (SELECT c.payload FROM delivery_corrections c WHERE c.delivery_id = d.id ORDER BY c.id DESC LIMIT 1),
               s.payload) END AS payload,
           s.received_at, s.erased_at
    FROM deliveries d JOIN submissions s ON s.id = d.submission_id
    WHERE d.id = ANY(%(ids)s)
    """

_RECORD_DELIVERED = """
    WITH done AS (
        SELECT * FROM unnest(CAST(%(ids)s AS bigint[]), CAST(%(refs)s AS text[]), CAST(%(started)s AS timestamptz[]))
            AS done(id, ref, started)
    ), moved AS (
        UPDATE deliveries SET state = 'delivered', external_reference = done.ref, next_attempt_at = NULL,
               attempts = deliveries.attempts + 1, updated_at = %(now)s
        FROM done
        -- IS TRUE keeps the planner off the (connector, state) index, whatever the table's size
        WHERE deliveries.id = done.id AND (deliveries.state IN ('pending', 'retrying')) IS TRUE
        RETURNING deliveries.id, deliveries.tenant, deliveries.attempts, done.started
    )
    INSERT INTO delivery_attempts (delivery_id, tenant, number, started_at, finished_at, outcome, error)
    SELECT id, tenant, attempts, started, %(now)s, 'delivered', NULL FROM moved
    RETURNING delivery_id, number
    """


def record_delivered_many(
    engine: Engine, outcomes: Sequence[tuple[int, datetime, str | None]], kept: KeptConnection | None = None
) -> list[int | None]:
    """Records many (delivery id, started, back-office reference) successes in one transaction
    (on `kept` when given, PostgreSQL only); returns each one's attempt number, or None where the
    delivery was already finished."""
    now = datetime.now(UTC)
    latest = {delivery_id: (started, reference) for delivery_id, started, reference in outcomes}
    if engine.dialect.name != "postgresql":
        # SQLite (the demo) cannot name a VALUES list's columns: one update each, in one transaction
        with engine.begin() as conn:
            numbers_each = {
                d: _finish(conn, d, started, "delivered", {"state": "delivered", "external_reference": ref, "next_attempt_at": None}, None)
                for d, (started, ref) in latest.items()
            }
        return _in_order(outcomes, {d: n for d, n in numbers_each.items() if n is not None})
    # one round trip and one fixed statement text: arrays, not VALUES lists;
    # the update and the attempts' insert are one statement, atomic without a transaction around it
    ids = list(latest)
    with _grouped(engine, kept) as conn:
        numbers: dict[int, int] = dict(
            driver(conn).execute(
                _RECORD_DELIVERED,
                {
                    "ids": ids,
                    "refs": [latest[d][1] for d in ids],
                    "started": [latest[d][0] for d in ids],
                    "now": now,
                },
            ).fetchall()
        )
    return _in_order(outcomes, numbers)


def _in_order(outcomes: Sequence[tuple[int, datetime, str | None]], numbers: dict[int, int]) -> list[int | None]:
    # a delivery twice in one batch (a redelivered message) is recorded once; the second hears None
    answered: set[int] = set()
    results: list[int | None] = []
    for delivery_id, _, _ in outcomes:
        results.append(numbers.get(delivery_id) if delivery_id not in answered else None)
        answered.add(delivery_id)
    return results


def record_retry(
    engine: Engine, delivery_id: int, started_at: datetime, error: str, retry_at: datetime
) -> int | None:
    """Records a failed attempt and when the next one is due; the worker then hands the delivery
    to the transport to bring it back then (hub.relay.transport `Transport.delay`)."""
    with engine.begin() as conn:
        number = _finish(
            conn,
            delivery_id,
            started_at,
            "transient",
            {"state": "retrying", "last_error": error, "next_attempt_at": retry_at},
            error,
        )
        return number


def record_parked(engine: Engine, delivery_id: int, started_at: datetime, error: str, outcome: str,
                  notice: Notice | None = None) -> int | None:
    with engine.begin() as conn:
        number = _finish(
            conn,
            delivery_id,
            started_at,
            outcome,
            {"state": "parked", "last_error": error, "next_attempt_at": None},
            error,
        )
        if number is not None and notice is not None:
            notice(conn, number)
        return number


def defer(engine: Engine, delivery_id: int, until: datetime) -> None:
    """Makes an open delivery wait without counting an attempt (its connector's circuit is open)."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery_id, deliveries.c.state.in_(OPEN_STATES))
            .values(next_attempt_at=until, updated_at=datetime.now(UTC))
        )
