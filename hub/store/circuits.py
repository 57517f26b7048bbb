"""Each connector's circuit breaker, kept in the database so every worker process shares it.

closed: deliveries flow. open: they wait, uncounted, until `opened_until`. half_open: one
worker's probe decides; success closes the circuit, failure opens it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.config import CircuitPolicy
from hub.store.tables import circuits


@dataclass(frozen=True)
class Circuit:
    connector: str
    state: str
    failures: int
    opened_until: datetime | None


def read(engine: Engine, connector: str) -> Circuit:
    with engine.connect() as conn:
        row = conn.execute(select(circuits).where(circuits.c.connector == connector)).first()
    if row is None:
        return Circuit(connector, "closed", 0, None)
    return Circuit(row.connector, row.state, row.failures, row.opened_until)


def read_all(engine: Engine) -> dict[str, Circuit]:
    with engine.connect() as conn:
        rows = conn.execute(select(circuits)).all()
    return {r.connector: Circuit(r.connector, r.state, r.failures, r.opened_until) for r in rows}


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
                    return Circuit(connector, "open", failures, until)
                conn.execute(
                    update(circuits).where(circuits.c.connector == connector).values(failures=failures, updated_at=now)
                )
                return Circuit(connector, state, failures, None)
        except IntegrityError:
            continue  # two workers created the row at once; read it again
    raise RuntimeError(f"could not record a failure for circuit {connector}")
