"""Intake's side of the store: one transaction stores a submission, its deliveries and outbox rows.

Also reads a submission's status and timeline for the front end that sent it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from hub.errors import IdempotencyConflict
from hub.store import attachments as attachment_rows
from hub.store.db import one_statement
from hub.store.tables import OPEN_STATES, customer_links, deliveries, outbox, submission_attachments, submissions
from hub.store.timeline import timeline

# Crockford's base32: no I, L, O or U, so a reference read out over the phone is unambiguous
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_reference(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


@dataclass(frozen=True)
class NewSubmission:
    tenant: str
    client_id: str
    form_id: str
    form_version: int
    # the payload sealed by hub.privacy.sealing.Sealer: the store never sees personal data in the clear
    sealed_payload: str
    body_sha256: str
    idempotency_key: str | None
    connectors: list[str]
    reference_prefix: str
    # (kind, keyed digest) of the resident's identifiers, for subject access and erasure
    subject_links: tuple[tuple[str, str], ...] = ()
    # (field, attachment id) for each attachment the payload names (checked by intake)
    attachments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Accepted:
    reference: str
    received_at: datetime
    created: bool


def accept(engine: Engine, new: NewSubmission) -> Accepted:
    """Stores the submission with one delivery and one outbox row per connector, atomically.

    A repeated Idempotency-Key with the same body returns the first submission; with another
    body it raises IdempotencyConflict.
    """
    if new.idempotency_key is not None:
        earlier = _by_idempotency_key(engine, new)
        if earlier is not None:
            return earlier
    for _ in range(5):
        try:
            with engine.begin() as conn:
                return _insert(conn, new)
        except IntegrityError:
            # either two requests raced on one Idempotency-Key, or (vanishingly rare) a
            # reference collided; the first case is answered by the earlier submission
            if new.idempotency_key is not None:
                earlier = _by_idempotency_key(engine, new)
                if earlier is not None:
                    return earlier
    raise RuntimeError("could not allocate a unique reference after 5 tries")


def _insert_submissions(dialect: str) -> Any:
    """INSERT that quietly skips a repeated (client, Idempotency-Key): the repeat is then read back."""
    elements = [submissions.c.client_id, submissions.c.idempotency_key]
    if dialect == "postgresql":
        return pg_insert(submissions).on_conflict_do_nothing(index_elements=elements)
    if dialect == "sqlite":
        return sqlite_insert(submissions).on_conflict_do_nothing(index_elements=elements)
    return insert(submissions)


def accept_many(engine: Engine, batch: list[NewSubmission]) -> list[Accepted | IdempotencyConflict]:
    """Stores many submissions in one transaction (group commit): on PostgreSQL one statement for
    the whole batch, elsewhere a few multi-row inserts. A repeated Idempotency-Key answers with the first submission, or
    with an IdempotencyConflict when the body differs; results follow the batch's order."""
    now = datetime.now(UTC)
    references = [new_reference(new.reference_prefix) for new in batch]
    try:
        # on PostgreSQL the batch is one statement, atomic by itself: no BEGIN and COMMIT round trips
        with one_statement(engine) if engine.dialect.name == "postgresql" else engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                inserted = _insert_all_postgres(conn, batch, references, now)
            else:
                inserted = _insert_all(conn, batch, references, now)
            results: list[Accepted | IdempotencyConflict] = []
            for new, reference in zip(batch, references):
                if reference in inserted:
                    results.append(Accepted(reference, now, created=True))
                else:
                    results.append(_earlier(conn, new))
            return results
    except IntegrityError:
        # a reference collided (vanishingly rare): store them one by one instead
        found: list[Accepted | IdempotencyConflict] = []
        for new in batch:
            try:
                found.append(accept(engine, new))
            except IdempotencyConflict as exc:
                found.append(exc)
        return found


# One statement, one round trip, whatever the batch's size: the rows travel as three JSON
# documents (orjson writes them in microseconds, where psycopg's array dumping of a batch of 1 KB
# payloads took 7 % of the API's CPU), so the text never changes and PostgreSQL prepares it once.
# A repeated (client, Idempotency-Key) is skipped by ON CONFLICT and gets no links, deliveries
# or outbox rows (the join finds no id).
_ACCEPT_MANY = """
    WITH incoming AS (
        SELECT * FROM json_to_recordset(CAST(%(rows)s AS json))
            AS incoming(reference text, tenant text, client_id text, form_id text, form_version integer,
                        payload text, idempotency_key text, body_sha256 text, n integer)
    ), stored AS (
        INSERT INTO submissions (reference, tenant, client_id, form_id, form_version, payload, received_at,
                                 idempotency_key, body_sha256)
        SELECT reference, tenant, client_id, form_id, form_version, payload, %(now)s, idempotency_key, body_sha256
        FROM incoming ORDER BY n
        ON CONFLICT (client_id, idempotency_key) DO NOTHING
        RETURNING id, reference, tenant
    ), linked AS (
        INSERT INTO customer_links (tenant, submission_id, kind, digest)
        SELECT DISTINCT stored.tenant, stored.id, link.kind, link.digest
        FROM json_to_recordset(CAST(%(links)s AS json)) AS link(reference text, kind text, digest text)
        JOIN stored ON stored.reference = link.reference
    ), attached AS (
        INSERT INTO submission_attachments (submission_id, attachment_id, field)
        SELECT stored.id, file.attachment_id, file.field
        FROM json_to_recordset(CAST(%(attachments)s AS json)) AS file(reference text, attachment_id text, field text)
        JOIN stored ON stored.reference = file.reference
    ), routed AS (
        INSERT INTO deliveries (submission_id, tenant, connector, state, attempts, created_at, updated_at)
        SELECT stored.id, stored.tenant, route.connector, 'pending', 0, %(now)s, %(now)s
        FROM json_to_recordset(CAST(%(routes)s AS json)) AS route(reference text, connector text, n integer)
        JOIN stored ON stored.reference = route.reference
        ORDER BY route.n
        RETURNING id, connector
    ), queued AS (
        INSERT INTO outbox (delivery_id, connector, available_at)
        SELECT id, connector, %(now)s FROM routed ORDER BY id
    )
    SELECT reference, id FROM stored
    """


def _insert_all_postgres(conn: Connection, batch: list[NewSubmission], references: list[str], now: datetime) -> dict[str, int]:
    """Stores the batch in one statement; returns {reference: submission id} of those inserted."""
    rows = [
        {"reference": ref, "tenant": new.tenant, "client_id": new.client_id, "form_id": new.form_id,
         "form_version": new.form_version, "payload": new.sealed_payload, "idempotency_key": new.idempotency_key,
         "body_sha256": new.body_sha256, "n": n}
        for n, (new, ref) in enumerate(zip(batch, references))
    ]
    links = [{"reference": ref, "kind": kind, "digest": digest} for new, ref in zip(batch, references) for kind, digest in new.subject_links]
    files = [{"reference": ref, "attachment_id": a, "field": f} for new, ref in zip(batch, references) for f, a in new.attachments]
    routes = [{"reference": ref, "connector": connector, "n": n}
              for n, (ref, connector) in enumerate((ref, c) for new, ref in zip(batch, references) for c in new.connectors)]
    # exec_driver_sql: no compiling, and a failure still arrives as SQLAlchemy's (a 503 when the database is down)
    found = conn.exec_driver_sql(
        _ACCEPT_MANY,
        {"rows": orjson.dumps(rows).decode(), "links": orjson.dumps(links).decode(), "routes": orjson.dumps(routes).decode(),
         "attachments": orjson.dumps(files).decode(), "now": now},
    ).fetchall()
    return {reference: submission_id for reference, submission_id in found}


def _insert_all(conn: Connection, batch: list[NewSubmission], references: list[str], now: datetime) -> dict[str, int]:
    """Stores the batch with three multi-row inserts (SQLite); returns {reference: id} of those inserted."""
    found = conn.execute(
        _insert_submissions(conn.dialect.name).returning(submissions.c.reference, submissions.c.id),
        [
            {
                "reference": reference,
                "tenant": new.tenant,
                "client_id": new.client_id,
                "form_id": new.form_id,
                "form_version": new.form_version,
                "payload": new.sealed_payload,
                "received_at": now,
                "idempotency_key": new.idempotency_key,
                "body_sha256": new.body_sha256,
            }
            for new, reference in zip(batch, references)
        ],
    )
    inserted = {reference: submission_id for reference, submission_id in found}
    links = [
        {"tenant": new.tenant, "submission_id": inserted[ref], "kind": kind, "digest": digest}
        for new, ref in zip(batch, references) if ref in inserted for kind, digest in set(new.subject_links)
    ]
    if links:
        conn.execute(insert(customer_links), links)
    files = [{"submission_id": inserted[ref], "attachment_id": a, "field": f}
             for new, ref in zip(batch, references) if ref in inserted for f, a in new.attachments]
    if files:
        conn.execute(insert(submission_attachments), files)
    wanted = [(inserted[ref], new.tenant, c) for new, ref in zip(batch, references) if ref in inserted for c in new.connectors]
    if wanted:
        delivery_ids = conn.execute(
            insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True),
            [
                {"submission_id": sid, "tenant": tenant, "connector": c, "state": "pending", "attempts": 0, "created_at": now, "updated_at": now}
                for sid, tenant, c in wanted
            ],
        ).scalars().all()
        conn.execute(
            insert(outbox),
            [{"delivery_id": did, "connector": c, "available_at": now} for did, (_, _, c) in zip(delivery_ids, wanted)],
        )
    return inserted


def _earlier(conn: Connection, new: NewSubmission) -> Accepted | IdempotencyConflict:
    row = conn.execute(
        select(submissions.c.reference, submissions.c.received_at, submissions.c.body_sha256).where(
            submissions.c.client_id == new.client_id, submissions.c.idempotency_key == new.idempotency_key
        )
    ).one()
    if row.body_sha256 != new.body_sha256:
        return IdempotencyConflict(row.reference)
    return Accepted(row.reference, row.received_at, created=False)


def _by_idempotency_key(engine: Engine, new: NewSubmission) -> Accepted | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(submissions.c.reference, submissions.c.received_at, submissions.c.body_sha256).where(
                submissions.c.client_id == new.client_id,
                submissions.c.idempotency_key == new.idempotency_key,
            )
        ).first()
    if row is None:
        return None
    if row.body_sha256 != new.body_sha256:
        raise IdempotencyConflict(row.reference)
    return Accepted(row.reference, row.received_at, created=False)


def _insert(conn: Connection, new: NewSubmission) -> Accepted:
    now = datetime.now(UTC)
    reference = new_reference(new.reference_prefix)
    submission_id = conn.execute(
        insert(submissions)
        .values(
            reference=reference,
            tenant=new.tenant,
            client_id=new.client_id,
            form_id=new.form_id,
            form_version=new.form_version,
            payload=new.sealed_payload,
            received_at=now,
            idempotency_key=new.idempotency_key,
            body_sha256=new.body_sha256,
        )
        .returning(submissions.c.id)
    ).scalar_one()
    if new.subject_links:
        conn.execute(
            insert(customer_links),
            [{"tenant": new.tenant, "submission_id": submission_id, "kind": k, "digest": d} for k, d in set(new.subject_links)],
        )
    if new.attachments:
        conn.execute(insert(submission_attachments),
                     [{"submission_id": submission_id, "attachment_id": a, "field": f} for f, a in new.attachments])
    for connector in new.connectors:
        delivery_id = conn.execute(
            insert(deliveries)
            .values(
                submission_id=submission_id,
                tenant=new.tenant,
                connector=connector,
                state="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            .returning(deliveries.c.id)
        ).scalar_one()
        conn.execute(insert(outbox).values(delivery_id=delivery_id, connector=connector, available_at=now))
    return Accepted(reference, now, created=True)


def status(engine: Engine, tenant: str, reference: str, scanner_configured: bool = False) -> dict[str, Any] | None:
    """What the front end may see of one of its tenant's submissions, or None. With
    `scanner_configured` (HUB_CLAMD_SOCKET) an open delivery held for its files' virus scan says so."""
    with engine.connect() as conn:
        sub = conn.execute(
            select(
                submissions.c.id,
                submissions.c.reference,
                submissions.c.form_id,
                submissions.c.form_version,
                submissions.c.received_at,
            ).where(submissions.c.reference == reference, submissions.c.tenant == tenant)
        ).first()
        if sub is None:
            return None
        rows = conn.execute(
            select(deliveries).where(deliveries.c.submission_id == sub.id).order_by(deliveries.c.id)
        ).all()
        events = timeline(conn, sub.id, sub.received_at, rows)
        held = scan_wait(conn, sub.id, rows) if scanner_configured else None
        # a paid form's submission: its payment, and the status it gives the submission
        from hub.store.payments import view as payment_view

        paid = payment_view(conn, sub.id)
    return (paid or {}) | {
        "reference": sub.reference,
        "form_id": sub.form_id,
        "form_version": sub.form_version,
        "received_at": sub.received_at.isoformat(),
        "deliveries": [delivery_view(d, held) for d in rows],
        "timeline": events,
    }


SCAN_WAIT = "virus scan"


def scan_wait(conn: Connection, submission_id: int, rows: Any) -> str | None:
    """Why the submission's open deliveries wait for the virus scanner (a file of it not scanned
    yet), or None. Read from the files' scan state, so it is gone the moment the rescan passes them."""
    if not any(d.state in OPEN_STATES for d in rows):
        return None
    return attachment_rows.scan_hold(attachment_rows.of_submission(conn, submission_id))


def delivery_view(d: Any, scan_held: str | None = None) -> dict[str, Any]:
    """One delivery as front ends and staff see it; `scan_held`, the reason an open one waits for
    the virus scan of the submission's files (`scan_wait`)."""
    held = scan_held if d.state in OPEN_STATES else None
    return {
        "connector": d.connector,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "external_reference": d.external_reference,
        "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None,
        "created_at": d.created_at.isoformat(),
        "updated_at": d.updated_at.isoformat(),
        "waiting": SCAN_WAIT if held else None,
        "waiting_reason": held,
    }
