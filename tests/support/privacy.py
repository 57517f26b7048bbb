"""Submissions planted straight into a store, with sealed payloads, subject links, deliveries in
chosen states and a timeline, dated in the past: what retention, erasure and key rotation act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update

from hub.config.settings import Settings
from hub.intake.forms import FormRegistry, load_forms
from hub.privacy.sealing import Sealer, subject_digest
from hub.store import submissions as store
from hub.store.tables import customer_links, deliveries, outbox, status_events, submissions

SCHEMAS = Settings().schemas_dir
FORMS: FormRegistry = load_forms(SCHEMAS)
INDEX_KEY = b"index-key-for-tests-only"


def sample(form_id: str, sample_name: str, **changes: Any) -> Any:
    payload = json.loads((SCHEMAS / form_id / "samples" / f"{sample_name}.json").read_text())
    payload.update(changes)
    return payload


@dataclass(frozen=True)
class Planted:
    reference: str
    submission_id: int


def plant(
    engine: Engine,
    sealer: Sealer,
    payload: Any,
    *,
    form_id: str = "missed-bin-collection",
    tenant: str = "eastmoor",
    states: tuple[str, ...] = ("delivered",),
    days_ago: float = 100,
    message: str | None = "Crew booked for Tuesday",
) -> Planted:
    """A submission received `days_ago`, its deliveries (crm, crm-2, ...) last changed then too."""
    form = FORMS.get(form_id)
    assert form is not None
    links = tuple((kind, subject_digest(INDEX_KEY, kind, value)) for kind, value in form.subject_identifiers(payload))
    connectors = [f"crm-{i}" if i else "crm" for i in range(len(states))]
    new = store.NewSubmission(
        tenant=tenant,
        client_id=f"{tenant}-portal",
        form_id=form_id,
        form_version=form.version,
        sealed_payload=sealer.seal(payload),
        body_sha256="0" * 64,
        idempotency_key=None,
        connectors=connectors,
        reference_prefix="TST",
        subject_links=links,
    )
    accepted = store.accept(engine, new)
    then = datetime.now(UTC) - timedelta(days=days_ago)
    with engine.begin() as conn:
        sid = conn.execute(select(submissions.c.id).where(submissions.c.reference == accepted.reference)).scalar_one()
        conn.execute(update(submissions).where(submissions.c.id == sid).values(received_at=then))
        ids = conn.execute(select(deliveries.c.id).where(deliveries.c.submission_id == sid).order_by(deliveries.c.id)).scalars().all()
        for delivery_id, state in zip(ids, states):
            conn.execute(
                update(deliveries).where(deliveries.c.id == delivery_id).values(state=state, updated_at=then, created_at=then)
            )
            if state != "pending":
                conn.execute(outbox.delete().where(outbox.c.delivery_id == delivery_id))
        conn.execute(
            insert(status_events).values(
                tenant=tenant, submission_id=sid, status="in_progress", message=message, occurred_at=then,
                recorded_at=then, source="push", dedupe_key=f"seed:{accepted.reference}",
            )
        )
    return Planted(accepted.reference, sid)


def row(engine: Engine, reference: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(submissions).where(submissions.c.reference == reference)).one()


def links_of(engine: Engine, submission_id: int) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(customer_links).where(customer_links.c.submission_id == submission_id)).all())


def messages_of(engine: Engine, submission_id: int) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        query = select(status_events.c.status, status_events.c.message).where(status_events.c.submission_id == submission_id)
        return [(s, m) for s, m in conn.execute(query).all()]


def add_staff(hub: Any, staff_id: str, tenant: str, *roles: str) -> str:
    """A member of staff added to a running embedded hub; returns their bearer token."""
    import secrets

    from hub.config.files import Staff, hash_api_key

    token = f"{staff_id}-" + secrets.token_hex(8)
    hub.runtime.config.staff[staff_id] = Staff(id=staff_id, tenant=tenant, roles=roles)
    hub.runtime.config.staff_index[hash_api_key(token)] = staff_id
    return token


def use_keys(hub: Any, *keys: str) -> None:
    """Seal and open with these Fernet keys (newest first), and index with INDEX_KEY, from now on."""
    hub.runtime.sealer = Sealer.from_keys(list(keys))
    hub.runtime.index_key = INDEX_KEY


def raw_database(hub: Any) -> bytes:
    """Every byte of the embedded hub's SQLite files, as a thief with the disk would read them."""
    from pathlib import Path

    database = Path(str(hub.runtime.engine.url.database))
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
