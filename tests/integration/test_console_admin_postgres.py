"""The console's admin services on a real PostgreSQL: a key rotation keeps the old key for its
grace period, the audit search (reference inside jsonb detail, newest first, batches) scoped
to one tenant, and a webhook disabled (its waiting events failed) then deleted with its events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import Engine

from hub.config.files import hash_api_key
from hub.privacy.sealing import Sealer, new_key
from hub.store import audit, audit_search, clients, webhooks
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from tests.support.servers import PostgresServer

_databases = count(1)


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_console_admin_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_a_rotated_key_is_found_by_either_key_until_its_grace_ends(engine: Engine) -> None:
    _, old = clients.create(engine, clients.NewClient("wv-kiosk", "westvale", expires_in_days=30), "cli:test")
    done = clients.rotate(engine, "wv-kiosk", "staff:wv", timedelta(hours=2), tenant="westvale")
    assert done is not None
    stored, key = done
    by_old, by_new = clients.by_digest(engine, hash_api_key(old)), clients.by_digest(engine, hash_api_key(key))
    assert by_old is not None and by_old.by_previous_key and by_old.state() == "active"
    assert by_new is not None and not by_new.by_previous_key and by_new.key_prefix == key[:8]
    assert stored.expires_at is not None and stored.rotated_at is not None
    assert abs((stored.expires_at - stored.rotated_at) - timedelta(days=30)) < timedelta(seconds=1)
    assert clients.rotate(engine, "wv-kiosk", "staff:em", timedelta(hours=2), tenant="eastmoor") is None
    clients.revoke_previous(engine, "wv-kiosk", "staff:wv", "westvale")
    assert clients.by_digest(engine, hash_api_key(old)).state() == "expired"  # type: ignore[union-attr]


def test_the_audit_search_finds_a_reference_in_the_detail_and_reads_in_batches(engine: Engine) -> None:
    for n in range(7):
        audit.record(engine, "cli:jo", "westvale", "replay", f"delivery:{n}", {"reference": f"WV{n:04d}"})
    audit.record(engine, "cli:jo", "eastmoor", "replay", "delivery:99", {"reference": "WV0003"})
    mine = audit_search.AuditQuery(tenant="westvale", reference="WV0003")
    assert [e["target"] for e in audit_search.every(engine, mine)] == ["delivery:3"]
    every = audit_search.AuditQuery(tenant="westvale", action="replay")
    assert [e["target"] for e in audit_search.every(engine, every, batch=3)] == [f"delivery:{n}" for n in range(6, -1, -1)]
    first, older = audit_search.page(engine, every, size=5)
    assert len(first) == 5 and older is not None
    rest, last = audit_search.page(engine, every, before_id=older, size=5)
    assert [e["target"] for e in rest] == ["delivery:1", "delivery:0"] and last is None


def test_a_disabled_webhook_fails_its_waiting_events_and_a_deleted_one_takes_them_with_it(engine: Engine) -> None:
    now = datetime.now(UTC)
    hook = webhooks.Webhook("wh_pg1", "westvale", "wv-kiosk", "http://127.0.0.1:9/h", webhooks.EVENT_TYPES, now,
                            (webhooks.Secret("whsec_x", now),))
    webhooks.create(engine, Sealer.from_keys([new_key()]), hook)
    with engine.begin() as conn:
        assert webhooks.enqueue(conn, "wv-kiosk", "delivery.parked", "msg_1", {"a": 1}, now) == 1
    assert webhooks.disable(engine, "eastmoor", "wh_pg1", now) is None
    assert webhooks.disable(engine, "westvale", "wh_pg1", now) == {"tenant": "westvale", "client_id": "wv-kiosk", "url": "http://127.0.0.1:9/h"}
    [recent] = webhooks.recent_deliveries(engine, ["wh_pg1"])["wh_pg1"]
    assert recent["state"] == "failed" and recent["last_error"] == "the webhook was disabled"
    with engine.begin() as conn:
        assert webhooks.enqueue(conn, "wv-kiosk", "delivery.parked", "msg_2", {"a": 2}, now) == 0
    [listed] = webhooks.for_tenant(engine, "westvale")
    assert listed["disabled_at"] is not None and webhooks.for_tenant(engine, "eastmoor") == []
    assert webhooks.delete_for_tenant(engine, "eastmoor", "wh_pg1") is None
    assert webhooks.delete_for_tenant(engine, None, "wh_pg1") is not None
    assert webhooks.for_tenant(engine, None) == [] and webhooks.recent_deliveries(engine, ["wh_pg1"])["wh_pg1"] == []
