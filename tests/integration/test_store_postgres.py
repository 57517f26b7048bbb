"""The store on a real PostgreSQL: migrations, the one-transaction intake, idempotency races,
and outbox claims that two relays never share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import pytest
from sqlalchemy import Engine, func, inspect, select

from hub.errors import IdempotencyConflict
from hub.store import deliveries as deliveries_store
from hub.store import outbox
from hub.store import submissions as store
from hub.store.db import KeptConnection, make_engine
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, submissions
from hub.store.tables import outbox as outbox_table
from tests.support.servers import PostgresServer

_databases = count(1)


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_store_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def new(key: str | None = None, body: str = "a" * 64, connectors: list[str] | None = None) -> store.NewSubmission:
    return store.NewSubmission(
        tenant="eastmoor",
        client_id="demo-portal",
        form_id="missed-bin-collection",
        form_version=1,
        sealed_payload="sealed-elsewhere",
        body_sha256=body,
        idempotency_key=key,
        connectors=["crm", "garden-waste"] if connectors is None else connectors,
        reference_prefix="EDC",
    )


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (submissions, deliveries, outbox_table))  # type: ignore[return-value]


def test_migrations_create_every_table_and_can_run_again(engine: Engine) -> None:
    upgrade(engine)
    assert {"submissions", "deliveries", "delivery_attempts", "outbox", "alembic_version"} <= set(inspect(engine).get_table_names())


def test_a_submission_is_stored_with_one_delivery_and_one_outbox_row_per_connector(engine: Engine) -> None:
    accepted = store.accept(engine, new())
    assert accepted.created and counts(engine) == (1, 2, 2)
    status = store.status(engine, "eastmoor", accepted.reference)
    assert status is not None and [d["state"] for d in status["deliveries"]] == ["pending", "pending"]
    assert store.status(engine, "westvale", accepted.reference) is None


def test_a_failure_part_way_through_intake_stores_nothing(engine: Engine) -> None:
    # a connector name longer than its column makes the third insert fail inside the transaction
    with pytest.raises(Exception):
        store.accept(engine, new(connectors=["crm", "x" * 100]))
    assert counts(engine) == (0, 0, 0)


def test_racing_posts_with_one_idempotency_key_make_one_submission(engine: Engine) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        barrier.wait()
        results.append(store.accept(engine, new(key="retry-me")).reference)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert counts(engine) == (1, 2, 2)


def test_the_same_idempotency_key_with_another_body_conflicts(engine: Engine) -> None:
    first = store.accept(engine, new(key="k"))
    with pytest.raises(IdempotencyConflict) as caught:
        store.accept(engine, new(key="k", body="b" * 64))
    assert caught.value.reference == first.reference


def test_two_relays_never_claim_the_same_outbox_row(engine: Engine) -> None:
    for _ in range(10):
        store.accept(engine, new())
    with engine.begin() as first, engine.begin() as second:
        mine = outbox.claim_due(first, 12, ["crm", "garden-waste"])
        theirs = outbox.claim_due(second, 100, ["crm", "garden-waste"])
        assert len(mine) == 12 and len(theirs) == 8
        assert not {r.id for r in mine} & {r.id for r in theirs}


def test_a_group_commit_stores_every_submission_with_its_deliveries_and_outbox_rows(engine: Engine) -> None:
    batch = [new(connectors=["crm", "garden-waste"] if n % 2 else ["crm"]) for n in range(50)]
    accepted = store.accept_many(engine, batch)
    assert len({a.reference for a in accepted}) == 50
    assert counts(engine) == (50, 75, 75)
    for item, result in zip(batch, accepted):
        status = store.status(engine, "eastmoor", result.reference)
        assert status is not None and [d["connector"] for d in status["deliveries"]] == item.connectors


def test_a_group_commit_answers_repeated_idempotency_keys_with_the_first_submission(engine: Engine) -> None:
    first = store.accept(engine, new(key="portal-1"))
    batch = [new(key="portal-1"), new(key="portal-2"), new(key="portal-2"), new(key="portal-1", body="b" * 64), new()]
    results = store.accept_many(engine, batch)
    assert isinstance(results[0], store.Accepted) and results[0].reference == first.reference and not results[0].created
    assert isinstance(results[1], store.Accepted) and results[1].created
    assert isinstance(results[2], store.Accepted) and results[2].reference == results[1].reference and not results[2].created
    assert isinstance(results[3], IdempotencyConflict) and results[3].reference == first.reference
    assert isinstance(results[4], store.Accepted) and results[4].created
    assert counts(engine) == (3, 6, 6)


def _scans(engine: Engine, kept: KeptConnection) -> tuple[int, int]:
    """Whole-table scans of deliveries, and scans of its (connector, state) index, so far."""
    with kept() as conn:  # the kept session's counters reach the shared statistics now, not within a second
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    with engine.connect() as conn:
        return (
            conn.exec_driver_sql("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'deliveries'").scalar_one(),
            conn.exec_driver_sql("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'ix_deliveries_connector_state'").scalar_one(),
        )


def test_a_worker_that_started_on_empty_tables_still_finds_deliveries_by_primary_key_once_they_fill(engine: Engine) -> None:
    # psycopg prepares a statement after 5 runs; PostgreSQL then settles on a generic plan made
    # for the tables as they were. A worker started on a new database kept reading every delivery
    # by a whole-table scan: 3.6 ms a load at 10,000 rows in the benchmark, against 0.06 ms by
    # primary key; its records went through every pending delivery by the state index.
    kept = KeptConnection(engine)
    now = datetime.now(UTC)
    for _ in range(15):  # prepared by psycopg after 5; PostgreSQL settles on one plan after 5 more
        assert deliveries_store.load_many(engine, [1, 2], kept) == [None, None]
        assert deliveries_store.record_delivered_many(engine, [(1, now, None)], kept) == [None]
    assert len(store.accept_many(engine, [new() for _ in range(5000)])) == 5000
    with engine.connect() as conn:
        delivery_ids = list(conn.execute(select(deliveries.c.id).order_by(deliveries.c.id)).scalars())
    before = _scans(engine, kept)
    for start in range(0, 200, 10):
        some = delivery_ids[start:start + 10]
        jobs = deliveries_store.load_many(engine, some, kept)
        assert [job.delivery_id for job in jobs if job is not None] == some
        assert deliveries_store.record_delivered_many(engine, [(d, now, f"CASE-{d}") for d in some], kept) == [1] * 10
    assert _scans(engine, kept) == before
    kept.close()
    with engine.connect() as conn:  # the connection went back to the pool with scans allowed again
        assert conn.exec_driver_sql("SHOW enable_seqscan").scalar_one() == "on"
