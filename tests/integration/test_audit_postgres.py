"""The audit log and stored clients on a real PostgreSQL brought up by `hub migrate`'s upgrade:
the database itself refuses to change, delete or truncate audit entries, and the hash chain
shows what someone who switches that off changed, removed or added, even with many appends at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from itertools import count

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from hub.config.files import load_config
from hub.config.settings import Settings
from hub.store import audit, audit_chain, circuits, clients
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


# -- the hash chain (hub/store/audit_chain.py, `hub audit verify`) on PostgreSQL


def _attacker(engine: Engine, *statements: str) -> None:
    """Someone with the database owner's rights: switches the append-only trigger off first."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        for statement in statements:
            conn.execute(text(statement))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def _fill(engine: Engine, count: int) -> None:
    for n in range(1, count + 1):
        audit.record(engine, f"staff:officer-{n}", "westvale" if n % 3 else None, "subject.erase", f"WV-{n:010d}",
                     {"form": "missed-bin-collection", "deliveries_parked": n, "share": n / 8, "whole": 2.0})


def test_hub_audit_verify_on_postgresql_passes_then_names_an_entry_edited_behind_the_triggers_back(postgres: PostgresServer) -> None:
    from tests.unit.test_cli import hub

    url = postgres.create_database(f"hub_audit_{next(_databases)}")
    engine = make_engine(url)
    upgrade(engine)
    _fill(engine, 6)
    env = {"HUB_DATABASE_URL": url}
    intact = hub("audit", "verify", env=env)
    assert intact.returncode == 0, intact.stderr
    assert "6 entries, chain intact" in intact.stdout
    _attacker(engine, """UPDATE audit_log SET detail = '{"form": "missed-bin-collection", "deliveries_parked": 0}' WHERE id = 5""")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:  # the trigger is back on
        conn.execute(update(audit_log).values(actor="x"))
    broken = hub("audit", "verify", env=env)
    assert broken.returncode == 1 and "entry 5 was edited" in broken.stderr and "chain intact" not in broken.stdout
    engine.dispose()


def test_deleted_entries_in_the_middle_and_at_the_end_are_found_on_postgresql(engine: Engine) -> None:
    _fill(engine, 8)
    recorded = audit_chain.verify(engine).head_hash
    _attacker(engine, "DELETE FROM audit_log WHERE id = 8")
    assert audit_chain.verify(engine).intact  # a cut tail needs the recorded head ...
    cut = audit_chain.verify(engine, expect_head=recorded).broken
    assert cut is not None and "the log ends at entry 7" in cut.problem  # ... which shows it
    _attacker(engine, "DELETE FROM audit_log WHERE id IN (3, 4)")
    gap = audit_chain.verify(engine).broken
    assert gap is not None and gap.entry_id == 5 and "entries between 2 and 5 were deleted" in gap.problem


def test_an_entry_slipped_into_a_gap_in_the_ids_is_named_as_inserted(engine: Engine) -> None:
    _fill(engine, 2)
    with pytest.raises(RuntimeError), engine.begin() as conn:  # a rolled-back append leaves id 3 unused
        audit.record(conn, "staff:officer", "westvale", "replay", "delivery:9")
        raise RuntimeError("the replay failed")
    _fill(engine, 2)
    with engine.connect() as conn:
        ids = conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars().all()
        second = conn.execute(select(audit_log).where(audit_log.c.id == 2)).one()
    assert ids == [1, 2, 4, 5] and audit_chain.verify(engine).intact
    forged = audit.entry_hash(3, second.at, "staff:ict-operator", "westvale", "replay", "delivery:1", None, second.entry_hash)
    _attacker(
        engine,
        "ALTER TABLE audit_log DROP CONSTRAINT uq_audit_log_prev_hash",
        f"INSERT INTO audit_log (id, at, actor, tenant, action, target, prev_hash, entry_hash) VALUES "
        f"(3, '{second.at.isoformat()}', 'staff:ict-operator', 'westvale', 'replay', 'delivery:1', '{second.entry_hash}', '{forged}')",
    )
    broken = audit_chain.verify(engine).broken
    assert broken is not None and broken.entry_id == 3 and "was inserted: entry 4 after it links to the entry before it" in broken.problem


def test_appends_from_many_connections_at_once_make_one_unbroken_chain(engine: Engine) -> None:
    threads, each = 8, 25
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            start.wait()
            for n in range(each):
                with engine.begin() as conn:  # each in a transaction that does other work too, as callers do
                    conn.execute(text("SELECT pg_sleep(0.001)"))
                    audit.record(conn, f"staff:worker-{worker}", "eastmoor", "replay", f"delivery:{worker}-{n}", {"n": n})
        except BaseException as exc:
            failures.append(exc)

    started = time.perf_counter()
    running = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    elapsed = time.perf_counter() - started
    assert failures == []
    verdict = audit_chain.verify(engine)
    assert verdict.intact and verdict.entries == threads * each
    with engine.connect() as conn:
        targets = set(conn.execute(select(audit_log.c.target)).scalars())
    assert targets == {f"delivery:{w}-{n}" for w in range(threads) for n in range(each)}
    print(f"{threads * each} concurrent appends from {threads} connections in {elapsed:.2f}s")


def test_upgrading_a_postgresql_hub_from_0004_chains_its_entries_and_keeps_the_triggers(postgres: PostgresServer) -> None:
    from alembic import command

    from hub.store.migrate import alembic_config

    engine = make_engine(postgres.create_database(f"hub_audit_{next(_databases)}"))
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004_residents")
    with engine.begin() as conn:
        for n in range(1, 5):
            conn.execute(
                text("INSERT INTO audit_log (at, actor, tenant, action, target, detail) "
                     "VALUES (now() - make_interval(days => :n), :actor, 'eastmoor', 'replay', :target, CAST(:detail AS jsonb))"),
                {"n": 10 - n, "actor": f"staff:officer-{n}", "target": f"delivery:{n}",
                 "detail": '{"z": 1, "a": {"y": [1.50, 2.0, 1e20]}, "name": "Siân"}'},
            )
    upgrade(engine)
    verdict = audit_chain.verify(engine)
    assert verdict.intact and verdict.entries == 4
    audit.record(engine, "cli:alice", None, "keys.rotate", "HUB_ENCRYPTION_KEYS")
    assert audit_chain.verify(engine, expect_head=verdict.head_hash).after_anchor == 1
    for statement in (update(audit_log).values(actor="x"), delete(audit_log), text("TRUNCATE audit_log")):
        with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as conn:
            conn.execute(statement)
    engine.dispose()
