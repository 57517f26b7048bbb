"""The audit log and stored clients on a real PostgreSQL brought up by `hub migrate`'s upgrade:
the database itself refuses to change, delete or truncate audit entries."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import pytest
from sqlalchemy import Engine, delete, text, update
from sqlalchemy.exc import DBAPIError

from hub.config.files import load_config
from hub.config.settings import Settings
from hub.store import audit, circuits, clients
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.tables import audit_log
from tests.support.servers import PostgresServer

_databases = count(1)


@pytest.fixture()
def engine(postgres: PostgresServer) -> Iterator[Engine]:
    engine = make_engine(postgres.create_database(f"hub_audit_{next(_databases)}"))
    upgrade(engine)
    yield engine
    engine.dispose()


def test_postgresql_refuses_update_delete_and_truncate_on_the_audit_log(engine: Engine) -> None:
    audit.record(engine, "staff:ict-operator", "eastmoor", "replay", "delivery:7", {"reference": "EDC-1"})
    refusals = (
        update(audit_log).values(actor="someone-else"),
        delete(audit_log).where(audit_log.c.id == 1),
        text("TRUNCATE audit_log"),
    )
    for statement in refusals:
        with pytest.raises(DBAPIError, match="audit_log is append-only"):
            with engine.begin() as conn:
                conn.execute(statement)
    [entry] = audit.entries(engine)
    assert (entry["actor"], entry["tenant"], entry["action"], entry["target"]) == ("staff:ict-operator", "eastmoor", "replay", "delivery:7")


def test_clients_pauses_and_configuration_changes_are_audited_on_postgresql(engine: Engine) -> None:
    settings = Settings()
    config = load_config(settings.config_dir, {})
    stored, key = clients.create(engine, clients.NewClient("em-kiosk", "eastmoor", forms=("missed-bin-collection",)), "cli:alice")
    assert clients.by_digest(engine, clients.hash_api_key(key)) == stored
    assert clients.problems(clients.NewClient("demo-portal", "eastmoor"), config) == [
        ("id", "client 'demo-portal' is defined in the configuration files; choose another id")
    ]
    with pytest.raises(clients.ClientExists):
        clients.create(engine, clients.NewClient("em-kiosk", "eastmoor"), "cli:alice")
    assert clients.revoke(engine, "em-kiosk", "cli:bob", tenant="westvale") is None
    assert clients.revoke(engine, "em-kiosk", "cli:bob").state() == "revoked"  # type: ignore[union-attr]
    assert circuits.pause(engine, "crm", "staff:ict-operator") is not None
    assert circuits.pause(engine, "crm", "staff:ict-operator") is None
    assert circuits.read(engine, "crm").paused_by == "staff:ict-operator"
    assert circuits.resume(engine, "crm", "staff:ict-operator") is not None
    assert audit.record_config_change(engine, settings.config_dir) is not None
    assert audit.record_config_change(engine, settings.config_dir) is None
    trail = audit.entries(engine)
    assert [(e["action"], e["actor"], e["tenant"]) for e in trail][:4] == [
        ("client.create", "cli:alice", "eastmoor"),
        ("client.revoke", "cli:bob", "eastmoor"),
        ("connector.pause", "staff:ict-operator", None),
        ("connector.resume", "staff:ict-operator", None),
    ]
    assert trail[4]["action"] == "config.change" and len(trail) == 5
    assert [e["target"] for e in audit.entries(engine, audit.AuditFilter(tenant="eastmoor"))] == ["client:em-kiosk", "client:em-kiosk"]
    assert key not in str(trail)
