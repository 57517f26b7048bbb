"""Upgrading a hub that already holds submissions (revision 0002, payloads in clear JSON): the
upgrade seals every stored payload with the current key and gives every attempt its tenant."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from hub.privacy.sealing import Sealer
from hub.store.migrate import alembic_config, upgrade

ANSWERS = {"name": "Siân Pritchard", "email": "sian.pritchard@example.org", "bin": "general"}


def test_an_upgrade_seals_the_payloads_already_stored_and_backfills_attempt_tenants(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("HUB_ENCRYPTION_KEYS", key)
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    config = alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    now = datetime.now(UTC).isoformat()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO submissions (id, reference, tenant, client_id, form_id, form_version, payload, received_at, body_sha256) "
            "VALUES (1, 'EDC-0000000001', 'eastmoor', 'demo-portal', 'missed-bin-collection', 1, :payload, :now, :sha)"
        ), {"payload": json.dumps(ANSWERS), "now": now, "sha": "0" * 64})
        conn.execute(text(
            "INSERT INTO deliveries (id, submission_id, tenant, connector, state, attempts, created_at, updated_at) "
            "VALUES (7, 1, 'eastmoor', 'crm', 'delivered', 1, :now, :now)"
        ), {"now": now})
        conn.execute(text(
            "INSERT INTO delivery_attempts (delivery_id, number, started_at, finished_at, outcome) VALUES (7, 1, :now, :now, 'delivered')"
        ), {"now": now})

    upgrade(engine)

    with engine.connect() as conn:
        stored = conn.execute(text("SELECT payload FROM submissions WHERE id = 1")).scalar_one()
        tenant = conn.execute(text("SELECT tenant FROM delivery_attempts WHERE delivery_id = 7")).scalar_one()
    assert "Pritchard" not in stored and "sian" not in stored
    assert Sealer.from_keys([key]).open(stored) == ANSWERS
    assert tenant == "eastmoor"
