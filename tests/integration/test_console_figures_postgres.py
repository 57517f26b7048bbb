"""The dashboard's figures on PostgreSQL, where the times to the back office are ranked by the
database (percentile_disc) instead of in Python: the same nearest-rank answers, and the console's
indexes are there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import Engine, inspect, update

from hub.console import figures
from hub.store import submissions as store
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, submissions
from tests.support.servers import PostgresServer

pytestmark = pytest.mark.integration
_databases = count(1)


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_figures_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_percentiles_from_postgresql_are_the_nearest_rank_of_the_times(engine: Engine) -> None:
    now = datetime.now(UTC)
    took = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0]
    made = store.accept_many(engine, [store.NewSubmission(
        tenant="eastmoor", client_id="demo-portal", form_id="missed-bin-collection", form_version=1,
        sealed_payload="x", body_sha256=f"{i:064d}", idempotency_key=f"k{i}", connectors=["crm"], reference_prefix="EDC",
    ) for i in range(len(took) + 1)])
    with engine.begin() as conn:
        for accepted, seconds in zip(made, took):
            received = now - timedelta(hours=1)
            sid = conn.execute(submissions.update().where(submissions.c.reference == accepted.reference)
                               .values(received_at=received).returning(submissions.c.id)).scalar_one()
            conn.execute(update(deliveries).where(deliveries.c.submission_id == sid)
                         .values(state="delivered", attempts=1, updated_at=received + timedelta(seconds=seconds)))
    found = figures.figures(engine, now - timedelta(days=7), "eastmoor")
    [form] = found.forms
    [crm] = found.connectors
    assert form.received == len(took) + 1 and form.states["delivered"] == len(took) and form.states["pending"] == 1
    assert form.seconds == []  # ranked by PostgreSQL, not read row by row
    assert form.median_seconds == pytest.approx(figures.percentile(took, 50)) == pytest.approx(5.0)
    assert form.p95_seconds == pytest.approx(figures.percentile(took, 95)) == pytest.approx(55.0)
    assert (crm.median_seconds, crm.p95_seconds) == (form.median_seconds, form.p95_seconds)
    assert figures.figures(engine, now + timedelta(minutes=1), "eastmoor").forms == []


def test_the_console_indexes_exist(engine: Engine) -> None:
    names = {i["name"] for table in ("submissions", "deliveries") for i in inspect(engine).get_indexes(table)}
    assert {"ix_deliveries_state_tenant", "ix_deliveries_external_reference",
            "ix_submissions_idempotency_key", "ix_submissions_tenant_form_received"} <= names
