"""The audit log: append-only in the database, a `config.change` entry when the hub starts on new
configuration files, filters for staff that stay within their tenant, an entry per admin action."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from hub.api.app import create_app
from hub.config.settings import Settings
from hub.runtime import Runtime
from hub.store import audit
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.tables import audit_log
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub
from tests.support.staff import staffed_hub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_the_database_refuses_to_change_or_delete_an_audit_entry(engine: Engine) -> None:
    audit.record(engine, "staff:ict-operator", "eastmoor", "replay", "delivery:7", {"reference": "EDC-1"})
    for statement in (update(audit_log).values(actor="someone-else"), delete(audit_log), text("DELETE FROM audit_log WHERE id = 1")):
        with pytest.raises(DBAPIError, match="audit_log is append-only"):
            with engine.begin() as conn:
                conn.execute(statement)
    [entry] = audit.entries(engine)
    assert entry["actor"] == "staff:ict-operator" and entry["target"] == "delivery:7"


def _start_api(tmp_path: Path, config: Path) -> list[dict]:
    """Starts and stops the API as `hub api` would; returns the config.change entries."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", config_dir=config)
    runtime = Runtime.build(settings, {})
    upgrade(runtime.engine)
    with TestClient(create_app(runtime)) as client:
        assert client.get("/healthz").status_code == 200
    found = audit.entries(runtime.engine, audit.AuditFilter(action="config.change"))
    runtime.close()
    return found


def test_starting_on_changed_configuration_records_one_config_change_naming_the_files(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    [first] = _start_api(tmp_path, config)
    assert first["actor"] == f"system:{socket.gethostname()}" and first["tenant"] is None and first["target"] == "config"
    assert "routes.yaml" in first["detail"]["changed"] and "open311/services.yaml" in first["detail"]["changed"]
    assert len(first["detail"]["digest"]) == 64
    assert len(_start_api(tmp_path, config)) == 1  # the same files: nothing new
    routes = config / "routes.yaml"
    routes.write_text(routes.read_text() + "\n# garden waste moves to the new contractor on 1 April\n")
    (config / "tenants.yaml").rename(config / "councils.yaml")
    before, after = _start_api(tmp_path, config)
    assert after["detail"]["changed"] == ["councils.yaml", "routes.yaml", "tenants.yaml"]
    assert after["detail"]["digest"] != before["detail"]["digest"]


@pytest.fixture()
def staffed(tmp_path: Path) -> Iterator[tuple[EmbeddedHub, dict[str, str]]]:
    with staffed_hub(tmp_path) as running:
        yield running


def test_staff_filter_the_trail_by_action_actor_and_time_and_see_only_their_tenants_entries(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    engine = hub.runtime.engine
    audit.record(engine, "staff:ict-operator", "eastmoor", "replay", "delivery:1")
    audit.record(engine, "cli:alice", "westvale", "client.create", "client:wv-a")
    time.sleep(0.05)
    since = datetime.now(UTC)
    audit.record(engine, "cli:bob", "westvale", "client.revoke", "client:wv-a")
    audit.record(engine, "staff:ict-operator", None, "connector.pause", "connector:crm")

    def targets(token: str, **params: str) -> list[str]:
        answer = hub.admin("GET", "/audit", token=token, params=params)
        assert answer.status_code == 200, answer.text
        return [e["target"] for e in answer.json() if e["action"] != "config.change"]

    everyone = tokens["ict-operator"]
    assert targets(everyone) == ["delivery:1", "client:wv-a", "client:wv-a", "connector:crm"]
    assert targets(everyone, action="replay") == ["delivery:1"]
    assert targets(everyone, actor="cli:bob") == ["client:wv-a"]
    assert targets(everyone, since=since.isoformat()) == ["client:wv-a", "connector:crm"]
    westvale = tokens["westvale-viewer"]
    assert [e["actor"] for e in hub.admin("GET", "/audit", token=westvale).json()] == ["cli:alice", "cli:bob"]
    assert targets(westvale, actor="staff:ict-operator") == []
    assert hub.admin("GET", "/audit", token=westvale, params={"since": "yesterday"}).status_code == 422


def test_every_admin_action_leaves_an_entry_with_actor_tenant_time_and_target(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    hub.crm.arm(FailurePlan(count=100, mode="status", status=502))
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    hub.wait_until_settled(reference)
    hub.crm.arm(FailurePlan(count=0))
    [parked] = hub.admin("GET", "/deliveries").json()
    started = datetime.now(UTC)
    assert hub.admin("POST", f"/deliveries/{parked['delivery_id']}/replay").status_code == 200
    assert hub.admin("POST", "/connectors/crm/pause").status_code == 200
    assert hub.admin("POST", "/connectors/crm/resume").status_code == 200
    assert hub.admin("POST", "/clients", token=tokens["westvale-admin"], json={"id": "wv-audit"}).status_code == 201
    assert hub.admin("POST", "/clients/wv-audit/revoke", token=tokens["westvale-admin"]).status_code == 200
    trail = {e["action"]: e for e in hub.admin("GET", "/audit", params={"since": started.isoformat()}).json()}
    expected = {
        "replay": ("staff:ict-operator", "eastmoor", f"delivery:{parked['delivery_id']}"),
        "connector.pause": ("staff:ict-operator", None, "connector:crm"),
        "connector.resume": ("staff:ict-operator", None, "connector:crm"),
        "client.create": ("staff:westvale-admin", "westvale", "client:wv-audit"),
        "client.revoke": ("staff:westvale-admin", "westvale", "client:wv-audit"),
    }
    assert {action: (e["actor"], e["tenant"], e["target"]) for action, e in trail.items()} == expected
    assert all(started <= datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in trail.values())
    with hub.runtime.engine.connect() as conn:  # and the start of this hub itself
        assert conn.execute(select(audit_log.c.actor).where(audit_log.c.action == "config.change")).scalar_one().startswith("system:")
