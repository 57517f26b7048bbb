"""Payments in the store: a paid form's submission is stored with its deliveries `held` and a
payment row (one transaction); the payment's outcome releases them (new outbox rows) or cancels
them, with a status event and its webhook rows, in one transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from hub.store import webhooks
from hub.store.submissions import Accepted, NewSubmission, _by_idempotency_key, new_reference
from hub.store.tables import customer_links, deliveries, outbox, payments, status_events, submissions

CONNECTOR = "pay"
# the hub's own states of a payment that is not finished yet
OPEN = ("creating", "created", "started", "submitted", "capturable")
# the payment's outcome -> what the submission's held deliveries become
RELEASED, CANCELLED = "pending", "cancelled"


@dataclass(frozen=True)
class PaidAccepted(Accepted):
    """A paid form's submission as stored: its status and payment, for the 202 answer."""

    payment: dict[str, Any] | None = None


def paid_receipt(engine: Engine, accepted: Accepted) -> PaidAccepted:
    with engine.connect() as conn:
        found = conn.execute(select(submissions.c.id).where(submissions.c.reference == accepted.reference)).scalar()
        shown = view(conn, found) if found is not None else None
    return PaidAccepted(accepted.reference, accepted.received_at, accepted.created, shown)


@dataclass(frozen=True)
class PaymentRow:
    id: int
    tenant: str
    submission_id: int
    reference: str
    client_id: str
    form_id: str
    payment_id: str | None
    return_token: str
    amount_pence: int
    state: str
    next_url: str | None
    last_error: str | None
    created_at: datetime
    returned_at: datetime | None


def _rows() -> Any:
    return select(
        payments.c.id, payments.c.tenant, payments.c.submission_id, submissions.c.reference, submissions.c.client_id,
        submissions.c.form_id, payments.c.payment_id, payments.c.return_token, payments.c.amount_pence, payments.c.state,
        payments.c.next_url, payments.c.last_error, payments.c.created_at, payments.c.returned_at,
    ).join(submissions, submissions.c.id == payments.c.submission_id)


def accept_held(engine: Engine, new: NewSubmission, amount_pence: int) -> Accepted:
    """Stores the submission, its links, its deliveries `held` (no outbox rows: nothing is sent)
    and its payment `creating`, atomically. A repeated Idempotency-Key returns the first one."""
    if new.idempotency_key is not None:
        earlier = _by_idempotency_key(engine, new)
        if earlier is not None:
            return earlier
    now = datetime.now(UTC)
    with engine.begin() as conn:
        reference = new_reference(new.reference_prefix)
        submission_id = conn.execute(
            insert(submissions).values(
                reference=reference, tenant=new.tenant, client_id=new.client_id, form_id=new.form_id,
                form_version=new.form_version, payload=new.sealed_payload, received_at=now,
                idempotency_key=new.idempotency_key, body_sha256=new.body_sha256,
            ).returning(submissions.c.id)
        ).scalar_one()
        if new.subject_links:
            conn.execute(insert(customer_links), [
                {"tenant": new.tenant, "submission_id": submission_id, "kind": k, "digest": d} for k, d in set(new.subject_links)
            ])
        for connector in new.connectors:
            conn.execute(insert(deliveries).values(
                submission_id=submission_id, tenant=new.tenant, connector=connector, state="held", attempts=0,
                created_at=now, updated_at=now,
            ))
        conn.execute(insert(payments).values(
            tenant=new.tenant, submission_id=submission_id, return_token=secrets.token_urlsafe(24),
            amount_pence=amount_pence, state="creating", created_at=now, updated_at=now,
        ))
    return Accepted(reference, now, created=True)


def for_reference(engine: Engine, tenant: str, reference: str) -> PaymentRow | None:
    with engine.connect() as conn:
        row = conn.execute(_rows().where(submissions.c.reference == reference, payments.c.tenant == tenant)).first()
    return PaymentRow(**row._asdict()) if row is not None else None


def for_token(engine: Engine, token: str) -> PaymentRow | None:
    with engine.connect() as conn:
        row = conn.execute(_rows().where(payments.c.return_token == token)).first()
    return PaymentRow(**row._asdict()) if row is not None else None


def unfinished(engine: Engine, limit: int = 200, tenant: str | None = None, created_before: datetime | None = None,
               unreturned: bool = False) -> list[PaymentRow]:
    """Payments not finished yet, oldest first; `unreturned`: only those whose resident never came back."""
    query = _rows().where(payments.c.state.in_(OPEN)).order_by(payments.c.id).limit(limit)
    if tenant is not None:
        query = query.where(payments.c.tenant == tenant)
    if created_before is not None:
        query = query.where(payments.c.created_at < created_before)
    if unreturned:
        query = query.where(payments.c.returned_at.is_(None))
    with engine.connect() as conn:
        return [PaymentRow(**row._asdict()) for row in conn.execute(query)]


def created(engine: Engine, row: PaymentRow, payment_id: str, next_url: str | None) -> None:
    with engine.begin() as conn:
        changed = conn.execute(update(payments).where(payments.c.id == row.id, payments.c.state == "creating").values(
            payment_id=payment_id, next_url=next_url, state="created", last_error=None, updated_at=datetime.now(UTC))).rowcount
        # intake and the worker's job may both have created it (the same Idempotency-Key): one event
        if changed:
            _event(conn, row, "payment_created", None, payment_id)


def creation_failed(engine: Engine, row: PaymentRow, error: str) -> None:
    """The payment service could not create the payment: the submission stays, `creating`, tried again."""
    with engine.begin() as conn:
        conn.execute(update(payments).where(payments.c.id == row.id).values(last_error=error, updated_at=datetime.now(UTC)))


def returned(engine: Engine, row: PaymentRow) -> None:
    with engine.begin() as conn:
        conn.execute(update(payments).where(payments.c.id == row.id, payments.c.returned_at.is_(None)).values(
            returned_at=datetime.now(UTC)))


def progressed(engine: Engine, row: PaymentRow, state: str) -> None:
    """A payment still under way moved on (started, submitted): noted on the timeline once."""
    if state == row.state or state not in OPEN:
        return
    with engine.begin() as conn:
        changed = conn.execute(update(payments).where(payments.c.id == row.id, payments.c.state.in_(OPEN)).values(
            state=state, updated_at=datetime.now(UTC))).rowcount
        if changed:
            _event(conn, row, f"payment_{state}", None, row.payment_id)


def settle(engine: Engine, row: PaymentRow, outcome: str, message: str | None) -> bool:
    """The payment finished (`success`, `failed`, `cancelled`, `expired`): in one transaction the
    payment's state, the held deliveries released (outbox rows) or cancelled, the status event and
    its webhook rows. Returns False when another process settled it first."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        changed = conn.execute(update(payments).where(payments.c.id == row.id, payments.c.state.in_(OPEN)).values(
            state=outcome, finished_at=now, updated_at=now, last_error=message if outcome != "success" else None)).rowcount
        if not changed:
            return False
        held = conn.execute(select(deliveries.c.id, deliveries.c.connector).where(
            deliveries.c.submission_id == row.submission_id, deliveries.c.state == "held")).all()
        state = RELEASED if outcome == "success" else CANCELLED
        error = None if outcome == "success" else f"not sent: the payment {'expired' if outcome == 'expired' else outcome}"
        conn.execute(update(deliveries).where(deliveries.c.submission_id == row.submission_id, deliveries.c.state == "held")
                     .values(state=state, last_error=error, updated_at=now))
        if outcome == "success" and held:
            conn.execute(insert(outbox), [{"delivery_id": d.id, "connector": d.connector, "available_at": now} for d in held])
        _event(conn, row, f"payment_{outcome}", message, row.payment_id)
    return True


def _event(conn: Connection, row: PaymentRow, status: str, message: str | None, payment_id: str | None) -> None:
    now = datetime.now(UTC)
    new_id = conn.execute(insert(status_events).values(
        tenant=row.tenant, submission_id=row.submission_id, delivery_id=None, connector=CONNECTOR, status=status,
        message=message, occurred_at=now, recorded_at=now, source="payment",
        dedupe_key=f"pay:{row.id}:{status}",
    ).returning(status_events.c.id)).scalar_one()
    final = status in ("payment_failed", "payment_cancelled", "payment_expired")
    body = {"type": "submission.status_changed", "timestamp": now.isoformat(), "data": {
        "reference": row.reference, "connector": CONNECTOR, "external_reference": payment_id, "status": status,
        "final": final, "occurred_at": now.isoformat(), "source": "payment",
    }}
    webhooks.enqueue(conn, row.client_id, "submission.status_changed", f"msg_status_{new_id}", body, now)


def submission_status(state: str, last_error: str | None) -> str:
    """The submission's status as a front end sees it, from its payment's state."""
    if state == "success":
        return "paid"
    if state in ("failed", "cancelled", "expired", "error"):
        return "cancelled"
    if state == "creating" and last_error:
        return "payment_unavailable"
    return "awaiting_payment"


def view(conn: Connection, submission_id: int) -> dict[str, Any] | None:
    """What a front end sees of a submission's payment, or None for a form without a fee."""
    row = conn.execute(select(payments).where(payments.c.submission_id == submission_id)).first()
    if row is None:
        return None
    return {
        "status": submission_status(row.state, row.last_error),
        "payment": {
            "state": row.state,
            "amount_pence": row.amount_pence,
            "payment_id": row.payment_id,
            "next_url": row.next_url if row.state in OPEN else None,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        },
    }
