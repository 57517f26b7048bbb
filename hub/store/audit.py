"""The append-only audit log: who did what, when, for which tenant, to which target.

Entries are only ever inserted (the database refuses UPDATE and DELETE on `audit_log`); an
entry written with a connection joins that connection's transaction, so the action and its
record commit together.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from hub.store.tables import audit_log


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
    `at` is now unless given (a retention run told what time it is)."""
    values = {
        "at": at or datetime.now(UTC),
        "actor": actor,
        "tenant": tenant,
        "action": action,
        "target": target,
        "detail": detail,
    }
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.begin() as conn:
            conn.execute(insert(audit_log).values(**values))
    else:
        conn_or_engine.execute(insert(audit_log).values(**values))


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
