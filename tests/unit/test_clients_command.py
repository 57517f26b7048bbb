"""`hub clients create / list / revoke` as ICT staff run them: the key is printed once and never
again, refusals say which option is wrong, and each change is in the audit log."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from sqlalchemy import select

from hub.store import audit
from hub.store.db import make_engine
from hub.store.tables import api_clients
from tests.unit.test_cli import hub


def test_create_prints_the_key_once_list_shows_only_its_start_and_revoke_is_audited(tmp_path: Path) -> None:
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    assert hub("migrate", env=env).returncode == 0
    made = hub("clients", "create", "--tenant", "eastmoor", "--id", "em-kiosk", "--name", "Town hall kiosk",
               "--forms", "missed-bin-collection,report-fly-tipping", "--expires-in-days", "90", "--actor", "alice", env=env)
    assert made.returncode == 0, made.stderr
    key = re.search(r"API key \(shown this once.*\): (cch_\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    assert "client em-kiosk (eastmoor) created; forms: missed-bin-collection, report-fly-tipping" in made.stdout
    engine = make_engine(env["HUB_DATABASE_URL"])
    with engine.connect() as conn:
        row = conn.execute(select(api_clients)).one()
    assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest() and row.key_prefix == key[:8]

    listing = hub("clients", "list", env=env)
    assert listing.returncode == 0 and key not in listing.stdout
    line = next(line for line in listing.stdout.splitlines() if line.startswith("em-kiosk"))
    assert key[:8] in line and "active" in line and "database" in line
    assert re.search(r"demo-portal\s+eastmoor\s+config", listing.stdout)
    assert "westvale" not in hub("clients", "list", "--tenant", "eastmoor", env=env).stdout

    revoked = hub("clients", "revoke", "em-kiosk", "--actor", "bob", env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout and "cli:bob" in revoked.stdout
    assert re.search(r"em-kiosk.*revoked", hub("clients", "list", env=env).stdout)
    trail = audit.entries(engine)
    assert [(e["action"], e["actor"], e["tenant"], e["target"]) for e in trail] == [
        ("client.create", "cli:alice", "eastmoor", "client:em-kiosk"),
        ("client.revoke", "cli:bob", "eastmoor", "client:em-kiosk"),
    ]
    assert key not in str(trail)
    engine.dispose()


def test_create_refuses_a_taken_id_an_unknown_tenant_and_forms_the_tenant_does_not_offer(tmp_path: Path) -> None:
    # the shipped configuration: westvale offers its waste and customer services, not council tax
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}"}
    assert hub("migrate", env=env).returncode == 0
    offered = hub("clients", "create", "--tenant", "westvale", "--id", "wv-web", "--forms", "missed-bin-collection,council-tax-moving-home", env=env)
    assert offered.returncode == 1 and "--forms: tenant 'westvale' does not offer form 'council-tax-moving-home'" in offered.stderr
    assert "API key" not in offered.stdout
    nowhere = hub("clients", "create", "--tenant", "northdale", "--id", "nd-web", env=env)
    assert nowhere.returncode == 1 and "--tenant: no tenant 'northdale'; known: eastmoor, westvale" in nowhere.stderr
    configured = hub("clients", "create", "--tenant", "westvale", "--id", "westvale-portal", env=env)
    assert configured.returncode == 1 and "--id: client 'westvale-portal' is defined in the configuration files" in configured.stderr
    assert hub("clients", "create", "--tenant", "westvale", "--id", "wv-web", env=env).returncode == 0
    twice = hub("clients", "create", "--tenant", "westvale", "--id", "wv-web", env=env)
    assert twice.returncode == 1 and "already exists" in twice.stderr
    assert "no stored client 'nobody'" in hub("clients", "revoke", "nobody", env=env).stderr


def test_rotate_prints_the_new_key_once_and_says_until_when_the_old_one_works(tmp_path: Path) -> None:
    env = {"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}", "HUB_CLIENT_KEY_GRACE_HOURS": "6"}
    assert hub("migrate", env=env).returncode == 0
    made = hub("clients", "create", "--tenant", "eastmoor", "--id", "em-kiosk", env=env)
    old = re.search(r"API key \(shown this once.*\): (cch_\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    rotated = hub("clients", "rotate", "em-kiosk", "--actor", "carol", env=env)
    assert rotated.returncode == 0, rotated.stderr
    key = re.search(r"API key \(shown this once.*\): (cch_\S+)", rotated.stdout).group(1)  # type: ignore[union-attr]
    assert key != old and f"the old one ({old[:8]}…) works until" in rotated.stdout
    engine = make_engine(env["HUB_DATABASE_URL"])
    with engine.connect() as conn:
        row = conn.execute(select(api_clients)).one()
    assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest() and row.previous_key_sha256 == hashlib.sha256(old.encode()).hexdigest()
    assert (row.previous_key_expires_at - row.rotated_at).total_seconds() == 6 * 3600
    [entry] = [e for e in audit.entries(engine) if e["action"] == "client.rotate"]
    assert entry["actor"] == "cli:carol" and key not in str(entry)
    missing = hub("clients", "rotate", "no-such", env=env)
    assert missing.returncode == 1 and "no stored client 'no-such'" in missing.stderr
    engine.dispose()
