"""Each connector's circuit breaker, kept in the database so every worker process shares it.

closed: deliveries flow. open: they wait, uncounted, until `opened_until`. half_open: one
worker's probe decides; success closes the circuit, failure opens it again. Apart from the
circuit, an operator may pause a connector: its deliveries then wait, uncounted, until resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.config.files import CircuitPolicy
from hub.store import audit
from hub.store.tables import circuits


@dataclass(frozen=True)
class Circuit:
    connector: str
    state: str
    failures: int
    opened_until: datetime | None
    paused_at: datetime | None = None
    paused_by: str | None = None
    # set by record_failure on the one call that moved the circuit to open (not one that found it open)
    opened_now: bool = False


def _from_row(row: Any) -> Circuit:
    return Circuit(row.connector, row.state, row.failures, row.opened_until, row.paused_at, row.paused_by)


def read(engine: Engine, connector: str) -> Circuit:
    with engine.connect() as conn:
        row = conn.execute(select(circuits).where(circuits.c.connector == connector)).first()
    if row is None:
        return Circuit(connector, "closed", 0, None)
    return _from_row(row)


def read_all(engine: Engine) -> dict[str, Circuit]:
    with engine.connect() as conn:
        rows = conn.execute(select(circuits)).all()
    return {r.connector: _from_row(r) for r in rows}


def try_probe(engine: Engine, connector: str, grace_seconds: float) -> bool:
    """Moves an open circuit whose wait is over to half-open; True for the one caller that did.

    A half-open circuit whose probe has gone quiet for `grace_seconds` (its worker died) may be
    probed again."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=grace_seconds)
    with engine.begin() as conn:
        moved = conn.execute(
            update(circuits)
            .where(
                circuits.c.connector == connector,
                ((circuits.c.state == "open") & (circuits.c.opened_until <= now))
                | ((circuits.c.state == "half_open") & (circuits.c.updated_at <= stale)),
            )
            .values(state="half_open", updated_at=now)
        ).rowcount
    return bool(moved)


def record_success(engine: Engine, connector: str) -> bool:
    """Closes the circuit and clears its failures; True when it was open or half-open before."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        reopened = conn.execute(
            update(circuits)
            .where(circuits.c.connector == connector, circuits.c.state != "closed")
            .values(state="closed", failures=0, opened_until=None, updated_at=now)
        ).rowcount
        conn.execute(
            update(circuits)
            .where(circuits.c.connector == connector, circuits.c.failures > 0)
            .values(failures=0, updated_at=now)
        )
    return bool(reopened)


def record_failure(engine: Engine, connector: str, policy: CircuitPolicy) -> Circuit:
    """Counts a transient failure; opens the circuit at the threshold, or at once when probing."""
    now = datetime.now(UTC)
    for _ in range(3):
        try:
            with engine.begin() as conn:
                row = conn.execute(
                    select(circuits).where(circuits.c.connector == connector).with_for_update()
                ).first()
                if row is None:
                    conn.execute(insert(circuits).values(connector=connector, state="closed", failures=0, updated_at=now))
                    state, failures = "closed", 0
                else:
                    state, failures = row.state, row.failures
                failures += 1
                if state == "half_open" or failures >= policy.failure_threshold:
                    until = now + timedelta(seconds=policy.open_seconds)
                    conn.execute(
                        update(circuits)
                        .where(circuits.c.connector == connector)
                        .values(state="open", failures=failures, opened_until=until, updated_at=now)
                    )
                    return Circuit(connector, "open", failures, until, opened_now=state != "open")
                conn.execute(
                    update(circuits).where(circuits.c.connector == connector).values(failures=failures, updated_at=now)
                )
                return Circuit(connector, state, failures, None)
        except IntegrityError:
            continue  # two workers created the row at once; read it again
    raise RuntimeError(f"could not record a failure for circuit {connector}")


def pause(engine: Engine, connector: str, actor: str, tenant: str | None = None) -> Circuit | None:
    """Pauses the connector and audits it; None when it was paused already (the first pause is
    kept). `tenant` is the one tenant the connector serves, None for a shared one."""
    now = datetime.now(UTC)
    for _ in range(3):
        try:
            with engine.begin() as conn:
                paused = conn.execute(
                    update(circuits)
                    .where(circuits.c.connector == connector, circuits.c.paused_at.is_(None))
                    .values(paused_at=now, paused_by=actor)
                ).rowcount
                if not paused:
                    exists = conn.execute(select(circuits.c.connector).where(circuits.c.connector == connector)).first()
                    if exists is not None:
                        return None
                    conn.execute(
                        insert(circuits).values(connector=connector, state="closed", failures=0, updated_at=now, paused_at=now, paused_by=actor)
                    )
                audit.record(conn, actor, tenant, "connector.pause", f"connector:{connector}")
            return read(engine, connector)
        except IntegrityError:
            continue  # a worker created the row at once; try the update again
    raise RuntimeError(f"could not pause connector {connector}")


def resume(engine: Engine, connector: str, actor: str, tenant: str | None = None) -> Circuit | None:
    """Lets the connector's deliveries flow again and audits it; None when it was not paused.
    The circuit breaker's own state is kept: a connector that was failing still has to pass its probe."""
    with engine.begin() as conn:
        before = conn.execute(select(circuits).where(circuits.c.connector == connector, circuits.c.paused_at.is_not(None))).first()
        if before is None:
            return None
        conn.execute(update(circuits).where(circuits.c.connector == connector).values(paused_at=None, paused_by=None))
        detail = {"paused_at": before.paused_at.isoformat(), "paused_by": before.paused_by}
        audit.record(conn, actor, tenant, "connector.resume", f"connector:{connector}", detail)
    return _from_row(before)
