"""The audit log as a hash chain on SQLite: `hub audit verify` says the chain is intact and
prints its head, and names the entry someone with database access edited, deleted or cut off;
the upgrade from 0004_residents chains the entries already there."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from hub.store import audit
from hub.store.audit_chain import verify
from hub.store.db import make_engine
from hub.store.migrate import alembic_config, upgrade
from hub.store.tables import audit_log, metadata
from tests.unit.test_cli import hub


@pytest.fixture()
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture()
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def fill(engine: Engine, count: int) -> None:
    for n in range(1, count + 1):
        audit.record(engine, f"staff:officer-{n}", "eastmoor" if n % 2 else None, "replay", f"delivery:{n}",
                     {"reference": f"EDC-{n:010d}", "attempts": n, "ratio": n / 4, "connectors": ("crm", "waste")})


def attacker(engine: Engine, *statements: str) -> None:
    """Someone with the database file: drops the append-only triggers first."""
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        for statement in statements:
            conn.execute(text(statement))


def verify_cli(url: str, *args: str) -> tuple[int, str, str]:
    done = hub("audit", "verify", *args, env={"HUB_DATABASE_URL": url})
    return done.returncode, done.stdout, done.stderr


def head_of(stdout: str) -> str:
    return re.search(r"head: entry \d+ ([0-9a-f]{64})", stdout).group(1)  # type: ignore[union-attr]


def test_each_entry_carries_the_hash_of_the_one_before_and_verify_prints_the_count_and_head(url: str, engine: Engine) -> None:
    fill(engine, 5)
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.entry_hash for r in rows[:-1]]
    assert len({r.entry_hash for r in rows}) == 5 and all(re.fullmatch(r"[0-9a-f]{64}", r.entry_hash) for r in rows)

    code, out, err = verify_cli(url)
    assert code == 0, err
    assert "5 entries, chain intact" in out
    assert head_of(out) == rows[-1].entry_hash and "head: entry 5 " in out
    assert "--expect-head" in err

    fill(engine, 2)  # later entries chain on after the head recorded earlier
    code, out, err = verify_cli(url, "--expect-head", rows[-1].entry_hash)
    assert code == 0, err
    assert "7 entries, chain intact" in out and "the expected head is entry 5; 2 entries were added after it" in out


def test_an_empty_log_is_intact_and_has_no_head(url: str, engine: Engine) -> None:
    code, out, _ = verify_cli(url)
    assert code == 0 and "0 entries, chain intact" in out and "head: none yet" in out


def test_an_entry_edited_with_sql_is_named_by_its_id(url: str, engine: Engine) -> None:
    fill(engine, 6)
    attacker(engine, """UPDATE audit_log SET detail = '{"reference": "EDC-0000000099"}' WHERE id = 4""")
    code, out, err = verify_cli(url)
    assert code == 1 and "chain intact" not in out
    assert "entry 4 was edited" in err and "after 3 good entries" in err


def test_an_edit_that_also_recomputes_the_entrys_hash_breaks_the_link_to_the_next_entry(engine: Engine) -> None:
    fill(engine, 6)
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.id == 3)).one()
    forged = audit.entry_hash(3, row.at, "staff:someone-else", row.tenant, row.action, row.target, row.detail, row.prev_hash)
    attacker(engine, f"UPDATE audit_log SET actor = 'staff:someone-else', entry_hash = '{forged}' WHERE id = 3")
    verdict = verify(engine)
    assert verdict.broken is not None and verdict.broken.entry_id == 4
    assert "does not follow entry 3" in verdict.broken.problem and "rewritten" in verdict.broken.problem


def test_a_deleted_middle_entry_shows_as_a_gap_between_its_neighbours(url: str, engine: Engine) -> None:
    fill(engine, 6)
    attacker(engine, "DELETE FROM audit_log WHERE id = 3")
    code, _, err = verify_cli(url)
    assert code == 1
    assert "entry 4 does not follow entry 2" in err and "entries between 2 and 4 were deleted" in err


def test_deleting_the_first_entries_is_found(engine: Engine) -> None:
    fill(engine, 4)
    attacker(engine, "DELETE FROM audit_log WHERE id <= 2")
    verdict = verify(engine)
    assert verdict.broken is not None and verdict.broken.entry_id == 3
    assert "the entries before it were deleted" in verdict.broken.problem


def test_cutting_off_the_last_entry_is_found_only_against_a_recorded_head(url: str, engine: Engine) -> None:
    fill(engine, 5)
    code, out, _ = verify_cli(url)
    recorded = head_of(out)
    attacker(engine, "DELETE FROM audit_log WHERE id = 5")
    code, out, _ = verify_cli(url)
    assert code == 0 and "4 entries, chain intact" in out  # what a chain alone cannot see
    code, out, err = verify_cli(url, "--expect-head", recorded)
    assert code == 1 and "chain intact" not in out
    assert f"the recorded head {recorded} is no entry's hash (the log ends at entry 4)" in err


def test_a_log_rewritten_with_fresh_hashes_is_found_against_a_recorded_head(engine: Engine) -> None:
    fill(engine, 4)
    recorded = verify(engine).head_hash
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    prev, statements = audit.GENESIS, []
    for row in rows:  # the attacker knows the (public) hash and redoes the whole chain
        actor = "staff:nobody" if row.id == 2 else row.actor
        digest = audit.entry_hash(row.id, row.at, actor, row.tenant, row.action, row.target, row.detail, prev)
        statements.append(f"UPDATE audit_log SET actor = '{actor}', prev_hash = '{prev}', entry_hash = '{digest}' WHERE id = {row.id}")
        prev = digest
    attacker(engine, "DROP INDEX IF EXISTS uq_audit_log_prev_hash", *statements)
    assert verify(engine).intact
    verdict = verify(engine, expect_head=recorded)
    assert verdict.broken is not None and verdict.broken.entry_id is None and recorded in verdict.broken.problem


def test_two_entries_after_the_same_one_are_refused(engine: Engine) -> None:
    fill(engine, 2)
    with engine.connect() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.id == 2)).one()
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a fork: an append that skipped the lock
        conn.execute(audit_log.insert().values(
            id=3, at=row.at, actor="x", tenant=None, action="y", target="z", detail=None, prev_hash=row.prev_hash, entry_hash="0" * 64,
        ))


def test_an_aware_time_in_another_zone_and_detail_with_whole_floats_hash_as_stored(engine: Engine) -> None:
    paris = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    audit.record(engine, "cli:alice", None, "keys.rotate", "HUB_ENCRYPTION_KEYS", {"rotated": 2.0, "tiny": 1e-7, "big": 1e20}, at=paris)
    assert verify(engine).intact


def test_verify_shows_progress_on_a_long_log(url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(10_050):
            audit.record(conn, "schedule:retention", "eastmoor", "retention.purge", "tenant:eastmoor", {"purged": n})
    started = time.perf_counter()
    code, out, err = verify_cli(url)
    elapsed = time.perf_counter() - started
    assert code == 0 and "10050 entries, chain intact" in out
    assert "verified 10,000 of 10,050 entries" in err
    print(f"verify of 10,050 entries on SQLite took {elapsed:.2f}s including start-up")


def test_the_table_definition_matches_the_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    audit_diffs = [d for d in diffs if "audit_log" in repr(d)]
    assert audit_diffs == []


def test_upgrading_from_0004_chains_the_entries_already_there_and_keeps_them_append_only(tmp_path: Path) -> None:
    plain = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    config = alembic_config(str(plain.url))
    with plain.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004_residents")
    week_ago = datetime.now(UTC) - timedelta(days=7)
    with plain.begin() as conn:
        for n in range(1, 4):
            conn.execute(
                text("INSERT INTO audit_log (at, actor, tenant, action, target, detail) VALUES (:at, :actor, :tenant, 'replay', :target, :detail)"),
                {"at": (week_ago + timedelta(hours=n)).replace(tzinfo=None), "actor": f"staff:officer-{n}", "tenant": "westvale" if n != 2 else None,
                 "target": f"delivery:{n}", "detail": json.dumps({"reference": f"WV-{n}", "nested": {"b": [1, 2.5], "a": "Siân"}})},
            )
    plain.dispose()

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine)
    verdict = verify(engine)
    assert verdict.intact and verdict.entries == 3 and verdict.head_id == 3
    audit.record(engine, "cli:alice", "westvale", "client.create", "client:wv-a")
    with engine.connect() as conn:
        newest = conn.execute(select(audit_log).where(audit_log.c.id == 4)).one()
    assert newest.prev_hash == verdict.head_hash and verify(engine).entries == 4
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log WHERE id = 1"):
        with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
