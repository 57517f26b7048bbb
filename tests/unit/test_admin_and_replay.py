"""Staff find parked deliveries, replay them, and see each connector's circuit breaker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config.files import CircuitPolicy
from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub, embedded_hub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
REPO = Path(__file__).resolve().parents[2]


def parked_reference(hub: EmbeddedHub, status: int = 502) -> tuple[str, dict]:
    hub.crm.arm(FailurePlan(count=100, mode="status", status=status))
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "parked"
    hub.crm.arm(FailurePlan(count=0))
    return reference, delivery


def test_a_parked_delivery_is_listed_with_its_reason_and_replayed_by_an_operator(hub: EmbeddedHub) -> None:
    reference, _ = parked_reference(hub)
    [parked] = hub.admin("GET", "/deliveries", params={"connector": "crm"}).json()
    assert parked["reference"] == reference and parked["last_error"] == "crm answered HTTP 502"
    replayed = hub.admin("POST", f"/deliveries/{parked['delivery_id']}/replay")
    assert replayed.status_code == 200
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "delivered" and delivery["external_reference"] == hub.crm.cases()[0]["reference"]
    [entry] = hub.admin("GET", "/audit", params={"action": "replay"}).json()
    assert entry["actor"] == "staff:ict-operator" and entry["target"] == f"delivery:{parked['delivery_id']}"
    assert entry["detail"]["reference"] == reference and entry["tenant"] == "eastmoor"
    # a delivered one cannot be replayed again
    assert hub.admin("POST", f"/deliveries/{parked['delivery_id']}/replay").status_code == 404


def test_a_replay_maps_again_from_the_original_payload_so_a_fixed_mapping_takes_effect(hub: EmbeddedHub) -> None:
    mapping = hub.runtime.mappings.pop(("missed-bin-collection", "crm"))
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "parked" and delivery["attempts"] == 1
    assert delivery["last_error"] == "no mapping from form 'missed-bin-collection' to connector 'crm'"
    hub.runtime.mappings[("missed-bin-collection", "crm")] = mapping  # the mapping is fixed and deployed
    body = hub.admin("POST", "/deliveries/replay", json={"reason_contains": "no mapping"}).json()
    assert body["count"] == 1 and not body["dry_run"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 2


def test_a_dry_run_shows_what_would_be_replayed_and_changes_nothing(hub: EmbeddedHub) -> None:
    reference, _ = parked_reference(hub)
    body = hub.admin("POST", "/deliveries/replay", json={"connector": "crm", "dry_run": True}).json()
    assert body["dry_run"] and body["count"] == 1 and body["deliveries"][0]["reference"] == reference
    time.sleep(0.3)
    assert hub.status(reference).json()["deliveries"][0]["state"] == "parked"
    assert hub.admin("GET", "/audit", params={"action": "replay"}).json() == []


def test_a_replayed_delivery_gets_its_full_retry_budget_again(hub: EmbeddedHub) -> None:
    reference, delivery = parked_reference(hub)
    hub.crm.arm(FailurePlan(count=2, mode="status", status=503))
    hub.admin("POST", "/deliveries/replay", json={"connector": "crm"})
    [after] = hub.wait_until_settled(reference)["deliveries"]
    assert after["state"] == "delivered" and after["attempts"] == delivery["attempts"] + 3


def test_staff_need_a_token_and_the_right_role(hub: EmbeddedHub) -> None:
    assert hub.client.get("/v1/admin/connectors").status_code == 401
    assert hub.admin("GET", "/connectors", token="guess").status_code == 401
    denied = hub.admin("POST", "/deliveries/replay", token=hub.westvale_staff_token, json={"connector": "crm"})
    assert denied.status_code == 403 and "operator role" in denied.json()["detail"]


def test_staff_of_one_tenant_see_nothing_of_another(hub: EmbeddedHub) -> None:
    parked_reference(hub)
    assert len(hub.admin("GET", "/deliveries").json()) == 1
    assert hub.admin("GET", "/deliveries", token=hub.westvale_staff_token).json() == []
    crm = next(c for c in hub.admin("GET", "/connectors", token=hub.westvale_staff_token).json() if c["name"] == "crm")
    assert crm["deliveries"]["parked"] == 0


@pytest.fixture()
def fragile_hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    # open long enough that the test sees it open for half a second before a probe is due, even
    # when the circuit opened while the test was still posting
    with embedded_hub(tmp_path, circuit=CircuitPolicy(failure_threshold=2, open_seconds=3.0)) as running:
        yield running


def test_the_circuit_opens_after_failures_in_a_row_holds_deliveries_uncounted_and_closes_after_a_good_probe(fragile_hub: EmbeddedHub) -> None:
    hub = fragile_hub
    hub.crm.arm(FailurePlan(count=10_000, mode="status", status=503))
    references = [hub.post("missed-bin-collection", SAMPLE).json()["reference"] for _ in range(5)]
    deadline = time.monotonic() + 10
    while True:
        crm = next(c for c in hub.admin("GET", "/connectors").json() if c["name"] == "crm")
        if crm["circuit"]["state"] == "open":
            break
        assert time.monotonic() < deadline, crm
        time.sleep(0.05)
    time.sleep(0.1)  # a request already on its way when the circuit opened lands
    requests_while_open = hub.crm.stats()["requests"]
    time.sleep(0.5)
    # while open, the back office is left alone and no attempts are spent
    assert hub.crm.stats()["requests"] == requests_while_open
    assert all(d["state"] in ("pending", "retrying") for r in references for d in hub.status(r).json()["deliveries"])
    hub.crm.arm(FailurePlan(count=0))
    for reference in references:
        [delivery] = hub.wait_until_settled(reference)["deliveries"]
        assert delivery["state"] == "delivered" and delivery["attempts"] <= 3
    crm = next(c for c in hub.admin("GET", "/connectors").json() if c["name"] == "crm")
    assert crm["circuit"]["state"] == "closed" and crm["deliveries"]["delivered"] == 5
    assert "hub_circuit_state" in hub.client.get("/metrics").text


def test_the_replay_command_lists_dry_runs_and_replays_with_the_operator_in_the_audit_log(hub: EmbeddedHub) -> None:
    reference, _ = parked_reference(hub)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, "HUB_DATABASE_URL": str(hub.runtime.engine.url)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub", "deliveries", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)

    listing = run("list", "--connector", "crm", "--since", "1h")
    assert reference in listing.stdout and "1 parked deliveries" in listing.stdout
    dry = run("replay", "--reason-contains", "HTTP 502", "--dry-run")
    assert "1 deliveries would be replayed (dry run)" in dry.stdout
    assert hub.status(reference).json()["deliveries"][0]["state"] == "parked"
    done = run("replay", "--connector", "crm", "--reason-contains", "HTTP 502")
    assert done.returncode == 0 and "1 deliveries replayed" in done.stdout
    assert hub.wait_until_settled(reference)["deliveries"][0]["state"] == "delivered"
    [entry] = hub.admin("GET", "/audit", params={"action": "replay"}).json()
    assert entry["actor"].startswith("cli:") and entry["action"] == "replay"
    nothing = run("replay")
    assert nothing.returncode == 1 and "name a delivery id, or filter" in nothing.stderr
