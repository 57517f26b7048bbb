"""Corrections on a real PostgreSQL: the worker's grouped load (its own SQL text) and the single
load both hand over the newest correction's answers; the correction commits with its replay and
audit entry; once the submission's payload is purged nothing is sent, whatever a correction holds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import pytest
from sqlalchemy import Engine, select, update

from hub.store import audit, corrections
from hub.store import deliveries as deliveries_store
from hub.store import submissions as store
from hub.store.db import KeptConnection, make_engine
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, submissions
from tests.support.servers import PostgresServer

_databases = count(1)


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_corrections_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def parked(engine: Engine) -> int:
    new = store.NewSubmission(tenant="eastmoor", client_id="demo-portal", form_id="missed-bin-collection", form_version=1,
                              sealed_payload="sealed-original", body_sha256="a" * 64, idempotency_key=None, connectors=["crm"],
                              reference_prefix="EDC")
    [accepted] = store.accept_many(engine, [new])
    assert isinstance(accepted, store.Accepted)
    with engine.connect() as conn:
        delivery_id = int(conn.execute(
            select(deliveries.c.id).join(submissions, submissions.c.id == deliveries.c.submission_id)
            .where(submissions.c.reference == accepted.reference)).scalar_one())
    deliveries_store.record_parked(engine, delivery_id, datetime.now(UTC), "CRM said 400", "permanent")
    return delivery_id


def test_the_worker_loads_the_newest_correction_and_nothing_once_the_payload_is_purged(engine: Engine) -> None:
    delivery_id = parked(engine)
    kept = KeptConnection(engine)
    for sealed, reason in (("sealed-first-fix", "UPRN wrong"), ("sealed-second-fix", "postcode wrong too")):
        found = corrections.target(engine, delivery_id, "eastmoor")
        assert found is not None and found.original == "sealed-original"
        done = corrections.correct_and_replay(engine, found, sealed, "sealed-diff", reason, "staff:eastmoor-operator", {"changes": []})
        assert done is not None and done["delivery_id"] == delivery_id
        [grouped] = deliveries_store.load_many(engine, [delivery_id], kept)
        single = deliveries_store.load(engine, delivery_id)
        assert grouped is not None and single is not None
        assert grouped.payload == single.payload == sealed and grouped.state == "pending"
        deliveries_store.record_parked(engine, delivery_id, datetime.now(UTC), "CRM said 400 again", "permanent")
    # another tenant's staff do not find it
    assert corrections.target(engine, delivery_id, "westvale") is None
    entries = audit.entries(engine, audit.AuditFilter(action="delivery.correct"))
    assert [e["detail"]["reason"] for e in entries] == ["UPRN wrong", "postcode wrong too"]
    assert len(corrections.history(engine, delivery_id)) == 2
    with engine.begin() as conn:
        conn.execute(update(submissions).values(payload=None, purged_at=datetime.now(UTC)))
    [grouped] = deliveries_store.load_many(engine, [delivery_id], kept)
    assert grouped is not None and grouped.payload is None and deliveries_store.load(engine, delivery_id).payload is None  # type: ignore[union-attr]
    kept.close()


def test_a_delivery_no_longer_parked_is_not_corrected_and_nothing_is_stored(engine: Engine) -> None:
    delivery_id = parked(engine)
    found = corrections.target(engine, delivery_id, None)
    assert found is not None
    assert corrections.correct_and_replay(engine, found, "sealed-fix", "d", "r", "staff:x", {}) is not None
    again = corrections.target(engine, delivery_id, None)
    assert again is not None and again.state == "pending"
    assert corrections.correct_and_replay(engine, again, "sealed-fix-2", "d", "r", "staff:x", {}) is None
    assert len(corrections.history(engine, delivery_id)) == 1
