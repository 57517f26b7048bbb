"""Councils sharing one hub, as their ICT teams configure it: connectors, routes and forms per
tenant. A shared form reaches each council's own back office, and a configuration that would
carry one council's submissions to another's back office is refused with its file and line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hub.config.checks import check_configuration
from hub.config.settings import Settings
from tests.support.embedded import EmbeddedHub, embedded_hub

ROOT = Path(__file__).resolve().parents[2]


def copy_of_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    return config


def line_of(path: Path, text: str, after: int = 0) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if n > after and text in line)


def sample(form: str, name: str) -> Any:
    return json.loads((ROOT / "schemas" / form / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def settled(hub: EmbeddedHub, reference: str, key: str, timeout: float = 15.0) -> dict[str, Any]:
    """The status as the council's own front end polls it, until every delivery has settled."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = hub.status(reference, key=key).json()
        if body["deliveries"] and all(d["state"] in ("delivered", "parked") for d in body["deliveries"]):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def config_check(config: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "hub", "config", "check"], cwd=ROOT, env={**clean, "HUB_CONFIG_DIR": str(config)},
        capture_output=True, text=True, timeout=120,
    )


def test_a_form_both_councils_offer_goes_to_each_councils_own_back_office(tmp_path: Path) -> None:
    config = copy_of_config(tmp_path)
    (config / "routes.yaml").write_text(
        "routes:\n"
        "  - form: missed-bin-collection\n    tenants: [eastmoor]\n    to: [{connector: crm}]\n"
        "  - form: missed-bin-collection\n    tenants: [westvale]\n    to: [{connector: garden-waste}]\n"
        "  - form: report-fly-tipping\n    to: [{connector: crm}]\n"
    )
    connectors = yaml.safe_load((config / "connectors.yaml").read_text())
    for connector in connectors["connectors"]:
        if connector["name"] == "garden-waste":
            connector["tenants"] = ["westvale"]  # Westvale's own waste system
    (config / "connectors.yaml").write_text(yaml.safe_dump(connectors))
    payload = sample("missed-bin-collection", "general-uprn")
    with embedded_hub(tmp_path, config_dir=config) as hub:
        eastmoor = hub.post("missed-bin-collection", payload).json()["reference"]
        westvale = hub.post("missed-bin-collection", payload, key=hub.westvale_key).json()["reference"]
        [east] = hub.wait_until_settled(eastmoor)["deliveries"]
        [west] = settled(hub, westvale, hub.westvale_key)["deliveries"]
        crm_cases, garden_cases = hub.crm.cases(), hub.garden.cases()
    assert eastmoor.startswith("EDC-") and westvale.startswith("WBC-")
    assert (east["connector"], east["state"]) == ("crm", "delivered")
    assert (west["connector"], west["state"]) == ("garden-waste", "delivered")
    assert len(crm_cases) == 1 and len(garden_cases) == 1
    assert eastmoor in json.dumps(crm_cases) and westvale not in json.dumps(crm_cases)
    assert westvale in json.dumps(garden_cases) and eastmoor not in json.dumps(garden_cases)


def test_a_route_carrying_one_councils_submissions_to_anothers_connector_and_an_unknown_tenant_are_refused(tmp_path: Path) -> None:
    config = copy_of_config(tmp_path)
    (config / "westvale.yaml").write_text(
        "connectors:\n"
        "  - name: westvale-crm\n    type: rest\n    tenants: [westvale]\n"
        "    options: {url: 'http://127.0.0.1:8109/api', reference_path: id}\n"
        "  - name: northfield-crm\n    type: rest\n    tenants: [northfield]\n"
        "    options: {url: 'http://127.0.0.1:8110/api'}\n"
        "routes:\n"
        "  - form: general-enquiry\n    tenants: [eastmoor, westvale]\n    to:\n      - connector: westvale-crm\n"
    )
    result = config_check(config)
    path = config / "westvale.yaml"
    assert result.returncode == 1
    problems = result.stderr.splitlines()
    assert (
        f"{path}:{line_of(path, 'connector: westvale-crm')}: route for 'general-enquiry' sends eastmoor's submissions "
        "to connector 'westvale-crm', which serves only westvale"
    ) in problems
    assert f"{path}:{line_of(path, 'name: northfield-crm')}: connector 'northfield-crm' names unknown tenant 'northfield'" in problems


def test_a_client_and_a_route_may_use_only_forms_their_council_offers(tmp_path: Path) -> None:
    config = copy_of_config(tmp_path)
    clients = (config / "clients.yaml").read_text().replace("forms: [missed-bin-collection]", "forms: [missed-bin-collection, council-tax-moving-home]")
    (config / "clients.yaml").write_text(clients)
    (config / "westvale-planning.yaml").write_text(
        "routes:\n  - form: planning-comment\n    tenants: [westvale]\n    to: [{connector: planning-comments}]\n"
    )
    problems = check_configuration(Settings(config_dir=config), {})
    assert problems == [
        "clients: client 'westvale-portal' may submit 'council-tax-moving-home', which tenant 'westvale' does not offer",
        "routes: a route for 'planning-comment' names tenant 'westvale', which does not offer that form",
    ]


def test_the_shipped_configuration_passes_with_westvale_offering_only_its_shared_services() -> None:
    assert check_configuration(Settings(), {}) == []
    tenants = {t["id"]: t for t in yaml.safe_load((ROOT / "config" / "tenants.yaml").read_text())["tenants"]}
    assert "council-tax-moving-home" not in tenants["westvale"]["forms"] and "missed-bin-collection" in tenants["westvale"]["forms"]
    assert all({"127.0.0.1", "localhost"} <= set(t["allowed_hosts"]) for t in tenants.values())


def test_polling_a_back_office_that_cannot_be_polled_and_a_misspelt_retention_form_are_refused(tmp_path: Path) -> None:
    config = copy_of_config(tmp_path)
    connectors = (config / "connectors.yaml").read_text()
    assert "status_updates: {secret_env: CRM_STATUS_SECRET}" in connectors
    # a REST back office cannot be asked for status; it must push
    (config / "connectors.yaml").write_text(connectors.replace(
        "status_updates: {secret_env: CRM_STATUS_SECRET}", "status_updates: {secret_env: CRM_STATUS_SECRET, poll_seconds: 60}"
    ))
    (config / "retention-extra.yaml").write_text("retention:\n  - form: missed-bin-colection\n    days: 30\n")
    problems = check_configuration(Settings(config_dir=config), {})
    assert [p for p in problems if "poll" in p] == [
        "connectors: crm: status_updates.poll_seconds is set, but a rest connector cannot poll for status "
        "(configure status_poll, or let the back office push)"
    ]
    assert any("missed-bin-colection" in p for p in problems), problems
