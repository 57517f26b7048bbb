"""Personal data on a real PostgreSQL: retention purges in batches (and two schedules never purge
one row twice), key rotation re-seals in batches, and an erasure strips one resident's data."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, insert, select, text, update

from hub.attachments.storage import FileStore
from hub.config.files import HubConfig, RetentionRule
from hub.privacy import retention
from hub.privacy.sealing import Sealer
from hub.privacy.subjects import ERASED_REASON, erase, export
from hub.store import personal_data as privacy
from hub.store import submissions as store
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.replay import audit_entries
from hub.store.tables import attempts, deliveries
from tests.support.privacy import FORMS, INDEX_KEY, links_of, messages_of, plant, row, sample
from tests.support.servers import PostgresServer

_databases = count(1)
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SEALER = Sealer.from_keys([OLD])


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_privacy_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_retention_purges_in_batches_keeps_metadata_and_leaves_open_or_parked_submissions(engine: Engine) -> None:
    due = [plant(engine, SEALER, sample("missed-bin-collection", "general-uprn")) for _ in range(5)]
    kept = [
        plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("parked",)),
        plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("delivered", "pending")),
        plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), days_ago=3),
    ]
    now = datetime.now(UTC)
    assert privacy.purge(engine, "eastmoor", "missed-bin-collection", now - timedelta(days=30), now, dry_run=True) == 5
    assert privacy.purge(engine, "eastmoor", "missed-bin-collection", now - timedelta(days=30), now, batch=2) == 5
    for planted in due:
        stored = row(engine, planted.reference)
        assert stored.payload is None and stored.purged_at == now
        assert links_of(engine, planted.submission_id) == [] and messages_of(engine, planted.submission_id) == [("in_progress", None)]
        status = store.status(engine, "eastmoor", planted.reference)
        assert status is not None and status["deliveries"][0]["state"] == "delivered"
    for planted in kept:
        assert row(engine, planted.reference).payload is not None and len(links_of(engine, planted.submission_id)) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 9


def test_two_overlapping_retention_runs_purge_each_payload_once_and_audit_the_total(engine: Engine) -> None:
    for _ in range(40):
        plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"))
    config = HubConfig(tenants={}, clients={}, connectors={}, routes=(), retention=(RetentionRule(days=90),))
    found: list[int] = []
    runs = [threading.Thread(target=lambda: found.extend(p.count for p in retention.run(engine, config, datetime.now(UTC), "schedule:retention"))) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sum(found) == 40
    assert sum(e["detail"]["purged"] for e in audit_entries(engine, "retention.purge")) == 40


def test_rotation_re_seals_in_batches_and_the_old_key_can_then_go(engine: Engine) -> None:
    planted = [plant(engine, SEALER, sample("missed-bin-collection", "general-uprn")) for _ in range(7)]
    both = Sealer.from_keys([NEW, OLD])
    seen: list[int] = []
    done = privacy.reseal(engine, both, "submissions", batch=3, progress=lambda r: seen.append(r.seen))
    assert (done.resealed, done.current, done.unreadable) == (7, 0, []) and seen == [3, 6, 7]
    again = privacy.reseal(engine, both, "submissions", batch=3)
    assert (again.resealed, again.current) == (0, 7)
    only_new = Sealer.from_keys([NEW])
    assert all(only_new.open(row(engine, p.reference).payload)["bin_type"] == "general" for p in planted)


def test_an_erasure_strips_one_residents_data_in_one_tenant_and_parks_their_open_delivery(engine: Engine, tmp_path: Path) -> None:
    # erasure also deletes the files of what it erased: a real file store, empty here
    files = FileStore(tmp_path / "attachments", MultiFernet([Fernet(Fernet.generate_key())]))
    runtime = SimpleNamespace(engine=engine, sealer=SEALER, index_key=INDEX_KEY, forms=FORMS, attachment_store=files)
    email = "aoife.mccann@example.org"
    mine = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("delivered", "retrying"))
    theirs = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), tenant="westvale")
    with engine.begin() as conn:
        # a back office that quoted the answers it refused
        first = conn.execute(select(deliveries.c.id).where(deliveries.c.submission_id == mine.submission_id).order_by(deliveries.c.id)).scalars().first()
        refused = f"crm answered HTTP 400: {email} for Aoife McCann is not known"
        conn.execute(update(deliveries).where(deliveries.c.id == first).values(last_error=refused))
        now = datetime.now(UTC)
        conn.execute(insert(attempts).values(delivery_id=first, tenant="eastmoor", number=1, started_at=now, finished_at=now, outcome="permanent", error=refused))
    assert len(export(runtime, "eastmoor", email, "staff:dpo")["submissions"]) == 1  # type: ignore[arg-type]

    [erased] = erase(runtime, "eastmoor", email, "staff:dpo")  # type: ignore[arg-type]
    assert erased.reference == mine.reference and erased.deliveries_parked == 1
    kept = SEALER.open(row(engine, mine.reference).payload)
    assert kept == {"address": {"uprn": "100023336956"}, "bin_type": "general", "collection_date": "2026-11-20", "bin_location": "front_of_property"}
    with engine.connect() as conn:
        states = conn.execute(select(deliveries.c.state, deliveries.c.last_error).where(deliveries.c.submission_id == mine.submission_id).order_by(deliveries.c.id)).all()
    scrubbed = "crm answered HTTP 400: [erased] for [erased] [erased] is not known"
    assert [tuple(s) for s in states] == [("delivered", scrubbed), ("parked", ERASED_REASON)]
    with engine.connect() as conn:
        assert conn.execute(select(attempts.c.error)).scalars().all() == [scrubbed]
    assert SEALER.open(row(engine, theirs.reference).payload)["email"] == email
    [entry] = audit_entries(engine, "subject.erase")
    assert entry["target"] == mine.reference and email not in str(entry)
