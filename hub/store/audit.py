"""The append-only audit log: who did what, when, for which tenant, to which target.

Entries are only ever inserted (the database refuses UPDATE and DELETE on `audit_log`); an
entry written with a connection joins that connection's transaction, so the action and its
record commit together.

Each entry is chained to the one before it: `prev_hash` is the previous entry's `entry_hash`
(64 zeros for the first), and `entry_hash` is the SHA-256 of the entry's canonical form
(`canonical()`), so `hub audit verify` (hub/store/audit_chain.py) finds an entry edited,
deleted or slipped in with SQL. Appends are serialised so "previous" is well defined: a
transaction-scoped advisory lock on PostgreSQL, the write lock every SQLite transaction
takes at BEGIN (hub/store/db.py); a unique `prev_hash` refuses a fork if anything bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text

from hub.store.tables import audit_log

# the prev_hash of the first entry
GENESIS = "0" * 64
# pg_advisory_xact_lock key that serialises audit appends across every hub process ("audit")
APPEND_LOCK = 0x6175646974


def _plain(value: Any) -> Any:
    """JSON values as every database gives them back: a float with no fraction is an integer
    (PostgreSQL's jsonb returns 1e20 as 100000000000000000000)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical(
    entry_id: int, at: datetime, actor: str, tenant: str | None, action: str, target: str, detail: Any, prev_hash: str
) -> bytes:
    """The bytes an entry's hash covers: a JSON object with sorted keys, no spaces, UTF-8, `at` in
    UTC with microseconds (`2026-12-07T06:20:39.123456+00:00`)."""
    if at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=UTC)
    entry = {
        "id": entry_id,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "tenant": tenant,
        "action": action,
        "target": target,
        "detail": _plain(detail),
        "prev_hash": prev_hash,
    }
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def entry_hash(
    entry_id: int, at: datetime, actor: str, tenant: str | None, action: str, target: str, detail: Any, prev_hash: str
) -> str:
    return hashlib.sha256(canonical(entry_id, at, actor, tenant, action, target, detail, prev_hash)).hexdigest()


def record(
    conn_or_engine: Connection | Engine,
    actor: str,
    tenant: str | None,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Appends one entry. `tenant` is None for hub-wide actions (a configuration change, a
    connector every tenant shares); never put a secret or a resident's data in `detail`.
    `at` is now unless given (a retention run told what time it is).

    On PostgreSQL the append holds a lock until the caller's transaction ends, so other appends
    wait for it: record last in a transaction, and keep audited transactions short."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            _append(conn, actor, tenant, action, target, detail, at or datetime.now(UTC))
    else:
        _append(conn_or_engine, actor, tenant, action, target, detail, at or datetime.now(UTC))


def _append(conn: Connection, actor: str, tenant: str | None, action: str, target: str, detail: Any, at: datetime) -> None:
    # hash what the database will give back, not the caller's objects (tuples, float noise)
    stored_detail = None if detail is None else json.loads(json.dumps(detail, allow_nan=False))
    if conn.dialect.name == "postgresql":
        # its own statement: the read below must take its snapshot after the lock is held
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK})
        row = conn.execute(text(
            "SELECT (SELECT entry_hash FROM audit_log ORDER BY id DESC LIMIT 1), "
            "nextval(pg_get_serial_sequence('audit_log', 'id'))"
        )).one()
        prev, entry_id = row[0] or GENESIS, int(row[1])
    else:
        last = conn.execute(select(audit_log.c.id, audit_log.c.entry_hash).order_by(audit_log.c.id.desc()).limit(1)).first()
        prev, entry_id = (last.entry_hash, last.id + 1) if last else (GENESIS, 1)
    digest = entry_hash(entry_id, at, actor, tenant, action, target, stored_detail, prev)
    conn.execute(insert(audit_log).values(
        id=entry_id, at=at, actor=actor, tenant=tenant, action=action, target=target, detail=stored_detail,
        prev_hash=prev, entry_hash=digest,
    ))


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    # None: every tenant's entries and the hub-wide ones (staff working for every tenant)
    tenant: str | None = None
    limit: int = 1000


def entries(engine: Engine, flt: AuditFilter | None = None) -> list[dict[str, Any]]:
    """Entries oldest first; a tenant's view holds only that tenant's entries."""
    flt = flt or AuditFilter()
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(flt.limit)
    if flt.action:
        query = query.where(audit_log.c.action == flt.action)
    if flt.actor:
        query = query.where(audit_log.c.actor == flt.actor)
    if flt.since:
        query = query.where(audit_log.c.at >= flt.since)
    if flt.tenant is not None:
        query = query.where(audit_log.c.tenant == flt.tenant)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "tenant": r.tenant, "action": r.action, "target": r.target, "detail": r.detail}
        for r in reversed(rows)
    ]


def config_digest(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under the configuration directory, by relative path."""
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def record_config_change(engine: Engine, directory: Path) -> dict[str, Any] | None:
    """Writes a `config.change` entry when the configuration differs from the one last recorded
    (a process starting on new files); returns the entry's detail, or None when unchanged."""
    files = config_digest(directory)
    digest = hashlib.sha256("".join(f"{name}\0{sha}\n" for name, sha in files.items()).encode()).hexdigest()
    with engine.begin() as conn:
        last = conn.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "config.change").order_by(audit_log.c.id.desc()).limit(1)
        ).scalar()
        before: dict[str, str] = (last or {}).get("files", {}) if isinstance(last, dict) else {}
        if isinstance(last, dict) and last.get("digest") == digest:
            return None
        changed = sorted(name for name in files.keys() | before.keys() if files.get(name) != before.get(name))
        detail = {"digest": digest, "changed": changed, "files": files}
        record(conn, f"system:{socket.gethostname()}", None, "config.change", "config", detail)
    return detail
