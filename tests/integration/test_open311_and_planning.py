"""Open311 both ways and the planning back office, end to end over real loopback sockets: the embedded hub
(intake, store, relay, worker) with the street-cleansing Open311 server and the planning system simulated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connectors.base import Secrets
from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from hub.intake.forms import schema_validator
from simulators.crm import FailurePlan
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from simulators.planning import PlanningState
from simulators.planning import create_app as create_planning
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.realworld import realworld

SAMPLES = Settings().schemas_dir


def odp_examples() -> list[Path]:
    """The 13 example applications the Open Digital Planning schemas publish."""
    return sorted(realworld("odp-planning", "examples", "application").rglob("*.json"))


@dataclass
class Offices:
    hub: EmbeddedHub
    street: Open311State
    street_url: str
    planning: PlanningState


@pytest.fixture()
def offices(tmp_path: Path) -> Iterator[Offices]:
    """The embedded hub with its street-cleansing and planning connectors pointed at running simulators."""
    street, planning = Open311State(api_key="street-key-91c0"), PlanningState(token="planning-token-5e2d")
    street_server, planning_server = ServerThread(create_open311(street)).start(), ServerThread(create_planning(planning)).start()
    with embedded_hub(tmp_path) as hub:
        connectors = hub.runtime.config.connectors
        for name, key, url in (
            ("street-cleansing", "endpoint", street_server.url + PREFIX),
            ("planning", "url", planning_server.url + "/api/applications"),
            ("planning-comments", "url", planning_server.url + "/api/comments"),
        ):
            connectors[name] = connectors[name].model_copy(update={"options": {**connectors[name].options, key: url}})
        hub.runtime.secrets = Secrets({
            **hub.runtime.secrets._environ,
            "STREET_CLEANSING_OPEN311_API_KEY": street.api_key,
            "PLANNING_API_TOKEN": planning.token or "",
        })
        try:
            yield Offices(hub, street, street_server.url + PREFIX, planning)
        finally:
            street_server.stop()
            planning_server.stop()


def sample(form_id: str, name: str) -> Any:
    return json.loads((SAMPLES / form_id / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def submit(hub: EmbeddedHub, form_id: str, payload: Any) -> str:
    reply = hub.post(form_id, payload)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["reference"])


def states(status: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {d["connector"]: (d["state"], d["attempts"]) for d in status["deliveries"]}


def test_every_odp_example_application_reaches_the_planning_system(offices: Offices) -> None:
    hub = offices.hub
    references = [submit(hub, "planning-application", json.loads(p.read_text(encoding="utf-8"))) for p in odp_examples()]
    for reference in references:
        [delivery] = hub.wait_until_settled(reference, timeout=30)["deliveries"]
        assert delivery["state"] == "delivered", delivery
        assert offices.planning.application(delivery["external_reference"]) is not None
    received = [a["application"] for a in offices.planning.applications()]
    assert len(received) == 13 and all(json.loads(p.read_text(encoding="utf-8")) in received for p in odp_examples())


def test_a_broken_application_is_refused_by_the_hub_before_any_delivery(offices: Offices) -> None:
    broken = json.loads(odp_examples()[0].read_text(encoding="utf-8"))
    broken["data"]["user"]["role"] = "landlord"
    reply = offices.hub.post("planning-application", broken)
    assert reply.status_code == 422 and reply.json()["errors"][0]["pointer"] == "/data/user/role"
    assert offices.planning.stats()["requests"] == 0


def test_public_comments_reach_their_applications_as_odp_comments(offices: Offices) -> None:
    hub = offices.hub
    for name in ("objection-light-and-privacy", "support-design", "neutral-traffic-and-noise"):
        reference = submit(hub, "planning-comment", sample("planning-comment", name))
        assert states(hub.wait_until_settled(reference)) == {"planning-comments": ("delivered", 1)}
    summary = httpx.get(f"{hub.runtime.config.connectors['planning'].options['url']}/26/00412/HOUS").json()["publicComments"]
    assert summary == {"totalComments": 2, "sentiment": {"objection": 1, "neutral": 0, "supportive": 1}}


def test_a_comment_on_an_unknown_application_parks_at_once(offices: Offices) -> None:
    payload = {**sample("planning-comment", "support-design"), "application_reference": "26/99999/FUL"}
    [delivery] = offices.hub.wait_until_settled(submit(offices.hub, "planning-comment", payload))["deliveries"]
    assert delivery["state"] == "parked" and delivery["attempts"] == 1
    assert "HTTP 404" in delivery["last_error"] and "26/99999/FUL" in delivery["last_error"]


def test_fly_tipping_goes_to_the_crm_and_to_street_cleansing_over_open311(offices: Offices) -> None:
    reference = submit(offices.hub, "report-fly-tipping", sample("report-fly-tipping", "uprn-with-reporter"))
    status = offices.hub.wait_until_settled(reference)
    assert states(status) == {"crm": ("delivered", 1), "street-cleansing": ("delivered", 1)}
    [request] = offices.street.requests()
    delivery = next(d for d in status["deliveries"] if d["connector"] == "street-cleansing")
    assert delivery["external_reference"] == request["service_request_id"]
    assert request["fields"]["address_id"] == "100023336956" and request["attributes"]["size"] == ["small_van"]
    found = httpx.get(f"{offices.street_url}/requests/{request['service_request_id']}.json").json()
    requests_schema = realworld("open311", "georeport-v2-schemas", "requests.json")
    validator = schema_validator(json.loads(requests_schema.read_text()), requests_schema)
    assert [e.message for e in validator.iter_errors(found)] == []


def test_an_open311_server_error_is_retried_until_it_is_delivered(offices: Offices) -> None:
    offices.street.arm(FailurePlan(count=2, status=503))
    reference = submit(offices.hub, "report-fly-tipping", sample("report-fly-tipping", "coordinates-anonymous"))
    assert states(offices.hub.wait_until_settled(reference))["street-cleansing"] == ("delivered", 3)
    assert offices.street.stats() == {"requests": 1, "posts": 3, "duplicates": 0, "rejected": 0}


def test_an_open311_refusal_parks_with_the_councils_reason(offices: Offices) -> None:
    offices.hub.runtime.secrets = Secrets({**offices.hub.runtime.secrets._environ, "STREET_CLEANSING_OPEN311_API_KEY": "revoked"})
    reference = submit(offices.hub, "report-fly-tipping", sample("report-fly-tipping", "grid-reference-email-only"))
    status = offices.hub.wait_until_settled(reference)
    delivery = next(d for d in status["deliveries"] if d["connector"] == "street-cleansing")
    assert (delivery["state"], delivery["attempts"]) == ("parked", 1)
    assert delivery["last_error"] == "street-cleansing refused the service request: HTTP 403: Invalid api_key received -- can't proceed with create_request."
    assert states(status)["crm"] == ("delivered", 1)


def test_a_planning_outage_is_retried_until_the_application_is_delivered(offices: Offices) -> None:
    offices.planning.arm(FailurePlan(count=1, status=502))
    reference = submit(offices.hub, "planning-application", sample("planning-application", "householder-rear-extension"))
    assert states(offices.hub.wait_until_settled(reference)) == {"planning": ("delivered", 2)}
    assert offices.planning.stats()["applications"] == 1


def test_a_report_from_fixmystreet_travels_through_the_hub_to_the_councils_open311(offices: Offices) -> None:
    hub = offices.hub
    body = urlencode([
        ("api_key", hub.key), ("service_code", "fly-tipping"), ("lat", "54.6502"), ("long", "-5.6702"),
        ("address_string", "Corner of Hollow Lane and Quay Street"), ("description", "Sofa and fridge by the bins"),
        ("attribute[waste_type][]", "furniture"), ("attribute[waste_type][]", "white_goods"), ("attribute[size]", "small_van"),
    ])
    reply = hub.client.post("/open311/v2/requests.json", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 200, reply.text
    reference = reply.json()[0]["service_request_id"]
    hub.wait_until_settled(reference)
    [request] = hub.client.get(f"/open311/v2/requests/{reference}.json").json()
    assert request["status"] == "closed"
    [forwarded] = offices.street.requests()
    assert forwarded["attributes"]["waste_type"] == ["furniture", "white_goods"] and forwarded["fields"]["lat"] == "54.6502"
