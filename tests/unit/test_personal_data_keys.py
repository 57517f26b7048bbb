"""Encryption keys as ICT rotate them: `hub keys new`, then `hub keys rotate` re-seals everything,
after which the old key can go and the hub still reads and delivers every submission."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import insert, select

from hub.privacy.sealing import Sealer
from hub.store.replay import audit_entries
from hub.store.tables import webhooks
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub
from tests.support.privacy import add_staff, row, sample, use_keys

REPO = Path(__file__).resolve().parents[2]
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def hub_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=REPO, env=clean | env, capture_output=True, text=True, timeout=120)


def test_a_new_key_is_printed_alone_and_is_a_working_fernet_key() -> None:
    result = hub_command("keys", "new", env={})
    assert result.returncode == 0
    key = result.stdout.strip()
    assert "\n" not in key and Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"ok")) == b"ok"
    assert key != hub_command("keys", "new", env={}).stdout.strip()


def test_after_a_rotation_the_old_key_can_be_removed_and_every_submission_is_still_read_and_delivered(hub: EmbeddedHub) -> None:
    use_keys(hub, OLD)
    caseworker = add_staff(hub, "em-caseworker", "eastmoor", "caseworker")
    delivered = [hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"] for _ in range(4)]
    for reference in delivered:
        hub.wait_until_settled(reference)
    hub.crm.arm(FailurePlan(count=100, mode="status", status=502))
    parked = hub.post("missed-bin-collection", sample("missed-bin-collection", "garden-uprn")).json()["reference"]
    assert {d["state"] for d in hub.wait_until_settled(parked)["deliveries"]} >= {"parked"}
    hub.crm.arm(FailurePlan(count=0))
    with hub.runtime.engine.begin() as conn:
        conn.execute(insert(webhooks).values(
            id="wh-1", tenant="eastmoor", client_id="demo-portal", url="https://portal.example/hooks",
            secrets=Sealer.from_keys([OLD]).seal(["whsec-old"]), events=["status"], created_at=datetime.now(UTC),
        ))
    env = {"HUB_DATABASE_URL": str(hub.runtime.engine.url), "HUB_ENCRYPTION_KEYS": f"{NEW},{OLD}"}

    # the new key first, the old one after it, and the hub restarted with both: then rotate
    use_keys(hub, NEW, OLD)
    rotated = hub_command("keys", "rotate", "--batch", "2", "--actor", "ict-keyholder", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "submissions: 2 checked, 2 re-sealed, 0 already on the newest key" in rotated.stdout
    assert "submissions: 5 checked, 5 re-sealed, 0 already on the newest key" in rotated.stdout
    assert "webhooks: 1 checked, 1 re-sealed, 0 already on the newest key" in rotated.stdout
    [entry] = audit_entries(hub.runtime.engine, "keys.rotate")
    assert entry["actor"] == "ict-keyholder" and entry["target"] == "HUB_ENCRYPTION_KEYS" and entry["tenant"] is None
    assert entry["detail"]["submissions"] == {"resealed": 5, "current": 0, "unreadable": 0}
    assert OLD not in rotated.stdout + rotated.stderr and NEW not in str(entry)

    # run again: nothing left to do
    again = hub_command("keys", "rotate", env=env)
    assert again.returncode == 0 and "submissions: 5 checked, 0 re-sealed, 5 already on the newest key" in again.stdout

    # the old key removed: everything still opens, the parked delivery is replayed and delivered
    use_keys(hub, NEW)
    only_new = Sealer.from_keys([NEW])
    for reference in [*delivered, parked]:
        assert only_new.open(row(hub.runtime.engine, reference).payload)["bin_type"] in ("general", "garden")
    with hub.runtime.engine.connect() as conn:
        assert only_new.open(conn.execute(select(webhooks.c.secrets)).scalar_one()) == ["whsec-old"]
    shown = hub.admin("GET", f"/submissions/{delivered[0]}", token=caseworker).json()
    assert shown["payload"]["email"] == "aoife.mccann@example.org"
    assert hub.admin("POST", "/deliveries/replay", json={"reason_contains": "HTTP 502"}).json()["count"] >= 1
    assert all(d["state"] == "delivered" for d in hub.wait_until_settled(parked)["deliveries"])
    assert any(case["reference"] for case in hub.crm.cases())

    # a database holding values no listed key opens: the command names them and fails, changing nothing else
    lost = hub_command("keys", "rotate", env={**env, "HUB_ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    assert lost.returncode == 1
    assert f"submissions: {parked} cannot be opened with any key of HUB_ENCRYPTION_KEYS" in lost.stderr
    assert "6 value(s) unreadable: put back the key they were sealed with and run again" in lost.stderr
    assert only_new.open(row(hub.runtime.engine, parked).payload)["bin_type"] == "garden"


def test_a_malformed_key_is_refused_with_a_plain_message() -> None:
    result = hub_command("keys", "rotate", env={"HUB_ENCRYPTION_KEYS": "not-a-key"})
    assert result.returncode == 1
    assert result.stderr.strip() == "HUB_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes (`hub keys new`)"
