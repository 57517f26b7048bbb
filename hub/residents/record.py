"""The one customer record: learning a signed-in resident's back-office references.

Two ways in, both through `learn`:
- the delivery side, once a connector took a record: `learn(conn, ...)` with the send result's
  external reference and the reply, inside the outcome's transaction;
- `catch_up`, before the record is read: every delivered delivery of the resident's submissions
  is read again (its external reference, the accepted payload), so nothing waits on the worker.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from hub.errors import UnknownKey
from hub.privacy.sealing import Sealer
from hub.residents.config import LearnRule, ResidentConfig
from hub.store import residents as store
from hub.store.residents import SUBJECT_KIND


def resident_digest(index_key: bytes, subject: str) -> str:
    """The keyed digest the portal's `sub` is kept as (never the `sub` itself); unlike an e-mail
    address a `sub` is case-sensitive, so it is not lower-cased."""
    return hmac.new(index_key, f"{SUBJECT_KIND}:{subject}".encode(), hashlib.sha256).hexdigest()


def found_by(rule: LearnRule, external_reference: str | None, reply: Any, payload: Any) -> dict[str, str]:
    """kind -> value one connector's rule reads from what it returned and what it accepted."""
    found = store.extract(rule.payload, payload) if payload is not None else {}
    found.update(store.extract(rule.reply, reply))
    if rule.external_reference is not None and external_reference:
        found[rule.external_reference] = external_reference
    return found


def learn(
    conn: Connection,
    sealer: Sealer,
    config: ResidentConfig,
    *,
    tenant: str,
    submission_id: int,
    connector: str,
    external_reference: str | None,
    reply: Any = None,
    payload: Any = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Records what `connector` said about the resident who made submission `submission_id`
    (nothing when it was not made by a signed-in resident, or no rule names the connector).
    `reply` is the back office's answer as plain data; `payload` the opened submission, for rules
    that read an accepted answer. Returns kind -> value learned (values are personal data: do not log)."""
    rules = config.rules_for(connector)
    subjects = store.subjects_of(conn, tenant, submission_id) if rules else []
    found: dict[str, str] = {}
    for rule in rules:
        found.update(found_by(rule, external_reference, reply, payload))
    if not found:
        return {}
    for subject in subjects:
        store.remember(conn, sealer, tenant, subject, found, connector, submission_id, now or datetime.now(UTC))
    return found if subjects else {}


def catch_up(engine: Engine, sealer: Sealer, config: ResidentConfig, tenant: str, subject: str) -> None:
    """Learns from the resident's delivered deliveries already stored, oldest first so the newest wins."""
    connectors = sorted({rule.connector for rule in config.learn})
    with engine.begin() as conn:
        for row in store.delivered_for(conn, tenant, subject, connectors):
            payload = _opened(sealer, row.payload)
            found: dict[str, str] = {}
            for rule in config.rules_for(row.connector):
                found.update(found_by(rule, row.external_reference, None, payload))
            if found:
                store.remember(conn, sealer, tenant, subject, found, row.connector, row.id, row.updated_at)


def record(engine: Engine, sealer: Sealer, config: ResidentConfig, tenant: str, subject: str) -> dict[str, dict[str, Any]] | None:
    """The resident's references in this tenant after catching up, or None if the tenant does not know them."""
    with engine.connect() as conn:
        if not store.known(conn, tenant, subject):
            return None
    catch_up(engine, sealer, config, tenant, subject)
    with engine.connect() as conn:
        return store.references(conn, sealer, tenant, subject)


def _opened(sealer: Sealer, token: str | None) -> Mapping[str, Any] | None:
    if token is None:
        return None
    try:
        value = sealer.open(token)
    except UnknownKey:
        return None
    return value if isinstance(value, Mapping) else None
