"""Operators pause a connector (its deliveries wait, uncounted) and resume it (they flow again);
an operator working for one tenant may pause only a connector that serves that tenant alone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config.settings import Settings
from tests.support.embedded import EmbeddedHub
from tests.support.staff import staffed_hub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


@pytest.fixture()
def staffed(tmp_path: Path) -> Iterator[tuple[EmbeddedHub, dict[str, str]]]:
    with staffed_hub(tmp_path) as running:
        yield running


def connector(hub: EmbeddedHub, name: str, token: str | None = None) -> dict:
    return next(c for c in hub.admin("GET", "/connectors", token=token).json() if c["name"] == name)


def test_submissions_made_while_a_connector_is_paused_wait_uncounted_and_are_delivered_after_resume(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, _ = staffed
    paused = hub.admin("POST", "/connectors/crm/pause")
    assert paused.status_code == 200 and paused.json()["paused"] and paused.json()["paused_by"] == "staff:ict-operator"
    crm = connector(hub, "crm")
    assert crm["paused"] and crm["paused_by"] == "staff:ict-operator" and crm["paused_at"]
    references = [hub.post("missed-bin-collection", SAMPLE).json()["reference"] for _ in range(3)]
    time.sleep(2.0)
    assert hub.crm.stats()["requests"] == 0 and hub.crm.cases() == []
    for reference in references:
        [delivery] = hub.status(reference).json()["deliveries"]
        assert delivery["state"] == "pending" and delivery["attempts"] == 0
    resumed = hub.admin("POST", "/connectors/crm/resume")
    assert resumed.status_code == 200 and not resumed.json()["paused"] and resumed.json()["changed"]
    for reference in references:
        [delivery] = hub.wait_until_settled(reference)["deliveries"]
        assert delivery["state"] == "delivered" and delivery["attempts"] == 1
    assert len(hub.crm.cases()) == 3 and not connector(hub, "crm")["paused"]
    trail = [e for e in hub.admin("GET", "/audit").json() if e["action"].startswith("connector.")]
    assert [(e["action"], e["actor"], e["tenant"], e["target"]) for e in trail] == [
        ("connector.pause", "staff:ict-operator", None, "connector:crm"),
        ("connector.resume", "staff:ict-operator", None, "connector:crm"),
    ]


def test_pausing_twice_keeps_the_first_pause_and_audits_it_once(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, _ = staffed
    first = hub.admin("POST", "/connectors/crm/pause").json()
    second = hub.admin("POST", "/connectors/crm/pause").json()
    assert first["changed"] and not second["changed"] and second["paused_at"] == first["paused_at"]
    assert not hub.admin("POST", "/connectors/garden-waste/resume").json()["changed"]
    assert len(hub.admin("GET", "/audit", params={"action": "connector.pause"}).json()) == 1
    assert hub.admin("GET", "/audit", params={"action": "connector.resume"}).json() == []


def test_a_tenant_operator_pauses_only_a_connector_that_serves_their_tenant_alone(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    garden = hub.runtime.config.connectors["garden-waste"]
    hub.runtime.config.connectors["garden-waste"] = garden.model_copy(update={"tenants": ("eastmoor",)})
    eastmoor = tokens["eastmoor-operator"]
    own = hub.admin("POST", "/connectors/garden-waste/pause", token=eastmoor)
    assert own.status_code == 200 and own.json()["paused_by"] == "staff:eastmoor-operator"
    shared = hub.admin("POST", "/connectors/crm/pause", token=eastmoor)
    assert shared.status_code == 403
    assert shared.json()["detail"] == (
        "Connector 'crm' also carries other councils' submissions, so only an operator working for every tenant may pause or resume it."
    )
    # westvale's staff neither see eastmoor's connector nor may act on it
    westvale = tokens["westvale-admin"]
    assert hub.admin("POST", "/connectors/garden-waste/resume", token=westvale).status_code == 404
    assert "garden-waste" not in [c["name"] for c in hub.admin("GET", "/connectors", token=westvale).json()]
    assert connector(hub, "garden-waste", eastmoor)["paused"]
    [entry] = hub.admin("GET", "/audit", token=eastmoor, params={"action": "connector.pause"}).json()
    assert entry["tenant"] == "eastmoor" and entry["target"] == "connector:garden-waste"
    assert hub.admin("GET", "/audit", token=westvale, params={"action": "connector.pause"}).json() == []


def test_pausing_needs_the_operator_role_and_a_known_connector(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    for role in ("westvale-viewer", "westvale-caseworker"):
        denied = hub.admin("POST", "/connectors/crm/pause", token=tokens[role])
        assert denied.status_code == 403 and "operator role" in denied.json()["detail"]
    missing = hub.admin("POST", "/connectors/no-such/pause")
    assert missing.status_code == 404 and missing.json()["detail"] == "No connector 'no-such' for this member of staff."
    assert not connector(hub, "crm")["paused"]
