"""The hub's own Open311 GeoReport v2 endpoint, seen as an Open311 client (FixMyStreet) sees it: form-encoded
POSTs over HTTP to the embedded hub, every answer checked against the real GeoReport v2 JSON Schemas."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from connectors.base import Secrets
from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from hub.errors import ConfigError
from hub.intake.forms import schema_validator
from hub.intake.georeport_services import load_services, translate
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from tests.support.embedded import EmbeddedHub
from tests.support.realworld import realworld

GEOREPORT = realworld("open311", "georeport-v2-schemas", module_level=True)
SERVICES = Settings().config_dir / "open311" / "services.yaml"
# A fly-tipping report as FixMyStreet posts it: form fields, a multivaluelist as attribute[code][]
FMS_REPORT = [
    ("service_code", "fly-tipping"), ("lat", "54.6536"), ("long", "-5.6689"),
    ("address_string", "Lay-by on the A2 just past the marina"),
    ("description", "Four tyres and a bag of rubble dumped overnight"),
    ("first_name", "Dafydd"), ("last_name", "Llewelyn"), ("email", "dafydd.llewelyn@example.org"),
    ("media_url", "https://www.fixmystreet.example/photo/88c2e1.jpeg"),
    ("attribute[waste_type][]", "tyres"), ("attribute[waste_type][]", "building_rubble"),
    ("attribute[size]", "car_boot"), ("attribute[fixmystreet_id]", "4127731"),
]


def georeport(name: str) -> Any:
    return schema_validator(json.loads((GEOREPORT / name).read_text()), GEOREPORT / name)


def messages(validator: Any, document: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(document)]


POST_REPLY = schema_validator({"type": "array", "minItems": 1, "items": {"$ref": "swagger.json#/definitions/RequestResponse"}}, GEOREPORT / "post-reply.json")
ERRORS = schema_validator(  # the spec's text: a list of {code, description}; no schema file is published
    {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["code", "description"], "additionalProperties": False,
     "properties": {"code": {"type": "integer"}, "description": {"type": "string", "minLength": 1}}}},
    GEOREPORT / "errors.json",
)


@pytest.fixture()
def street(hub: EmbeddedHub) -> Iterator[Open311State]:
    """The street-cleansing Open311 server, wired into the embedded hub before its connector is first used."""
    state = Open311State(api_key="street-key-" + hub.key[-6:])
    server = ServerThread(create_open311(state)).start()
    connectors = hub.runtime.config.connectors
    options = {**connectors["street-cleansing"].options, "endpoint": server.url + PREFIX}
    connectors["street-cleansing"] = connectors["street-cleansing"].model_copy(update={"options": options})
    hub.runtime.secrets = Secrets({**hub.runtime.secrets._environ, "STREET_CLEANSING_OPEN311_API_KEY": state.api_key})
    try:
        yield state
    finally:
        server.stop()


def post(hub: EmbeddedHub, fields: list[tuple[str, str]], key: str | None = None) -> Any:
    """POSTs as FixMyStreet does: form-encoded, repeated keys kept in order (no Python Open311 client can POST)."""
    body = urlencode([("api_key", key or hub.key), *fields])
    return hub.client.post("/open311/v2/requests.json", content=body, headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})


def test_the_service_list_and_definition_follow_the_georeport_schemas(hub: EmbeddedHub) -> None:
    services = hub.client.get("/open311/v2/services.json").json()
    assert messages(georeport("services.json"), services) == []
    assert [s["service_code"] for s in services] == ["fly-tipping"] and services[0]["metadata"] is True
    definition = hub.client.get("/open311/v2/services/fly-tipping.json").json()
    assert messages(georeport("service-definition.json"), definition) == []
    assert [a["code"] for a in definition["attributes"]] == ["waste_type", "size", "seen_at"]
    assert {"key": "tyres", "name": "Tyres"} in definition["attributes"][0]["values"]


def test_a_fixmystreet_report_becomes_a_fly_tipping_submission(hub: EmbeddedHub, street: Open311State) -> None:
    reply = post(hub, FMS_REPORT)
    assert reply.status_code == 200 and messages(POST_REPLY, reply.json()) == []
    reference = reply.json()[0]["service_request_id"]
    assert reference.startswith("EDC-")
    status = hub.wait_until_settled(reference)
    assert {d["connector"]: d["state"] for d in status["deliveries"]} == {"crm": "delivered", "street-cleansing": "delivered"}
    case = hub.crm.cases()[0]["record"]["data"][0]
    assert case["first_name"] == "Dafydd" and "Waste: Tyres, Building rubble" in case["details"]
    [forwarded] = street.requests()
    assert forwarded["attributes"]["waste_type"] == ["tyres", "building_rubble"]
    assert forwarded["fields"]["lat"] == "54.6536" and forwarded["attributes"]["hub_reference"] == [f"{reference}/street-cleansing"]


def test_the_stored_payload_is_the_forms_own_shape(hub: EmbeddedHub) -> None:
    service = load_services(SERVICES).get("fly-tipping")
    assert service is not None
    request = {k: v for k, v in FMS_REPORT if not k.startswith("attribute")}
    request.update({"attribute[waste_type]": ["tyres"], "attribute[size]": ["car_boot"]})  # type: ignore[dict-item]
    payload = translate(service, request, datetime(2026, 11, 23, 8, 2, tzinfo=UTC))  # type: ignore[arg-type]
    assert payload == {
        "location": {"latitude": 54.6536, "longitude": -5.6689, "description": "Lay-by on the A2 just past the marina"},
        "waste_types": ["tyres"], "size": "car_boot", "seen_at": "2026-11-23T08:02:00+00:00",
        "photos": [{"id": "88c2e1.jpeg", "url": "https://www.fixmystreet.example/photo/88c2e1.jpeg", "content_type": "image/jpeg"}],
        "reporter": {"name": {"first": "Dafydd", "last": "Llewelyn"}, "email": "dafydd.llewelyn@example.org"},
    }
    assert hub.runtime.forms.get("report-fly-tipping").errors(payload) == []  # type: ignore[union-attr]


def test_status_is_open_until_every_back_office_has_it_then_closed(hub: EmbeddedHub, street: Open311State) -> None:
    reference = post(hub, FMS_REPORT).json()[0]["service_request_id"]
    early = hub.client.get(f"/open311/v2/requests/{reference}.json").json()
    assert messages(georeport("requests.json"), early) == []
    hub.wait_until_settled(reference)
    [request] = hub.client.get(f"/open311/v2/requests/{reference}.json").json()
    assert messages(georeport("request.json"), request) == []
    assert request["status"] == "closed" and request["service_code"] == "fly-tipping"
    assert request["status_notes"] == "Passed to crm, street-cleansing."
    assert "description" not in request  # reads need no key, so nothing personal is shown


def test_a_delivery_that_cannot_happen_keeps_the_request_open(hub: EmbeddedHub) -> None:
    with socket.socket() as sock:  # street cleansing's server is down: its delivery retries, then parks
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}{PREFIX}"
    connectors = hub.runtime.config.connectors
    connectors["street-cleansing"] = connectors["street-cleansing"].model_copy(
        update={"options": {**connectors["street-cleansing"].options, "endpoint": down}}
    )
    reference = post(hub, FMS_REPORT).json()[0]["service_request_id"]
    hub.wait_until_settled(reference)
    [request] = hub.client.get(f"/open311/v2/requests/{reference}.json", params={"api_key": hub.key}).json()
    assert request["status"] == "open" and request["status_notes"] == "Waiting to reach street-cleansing."


def test_a_json_body_is_accepted_too(hub: EmbeddedHub) -> None:
    body = {"api_key": hub.key, "service_code": "fly-tipping", "address_id": "100023336956",
            "address_string": "Behind the garages", "attributes": {"waste_type": ["furniture"], "size": "small_van"}}
    reply = hub.client.post("/open311/v2/requests.json", json=body)
    assert reply.status_code == 200 and messages(POST_REPLY, reply.json()) == []


def test_fixmystreet_resending_the_same_report_gets_the_same_reference(hub: EmbeddedHub) -> None:
    first = post(hub, FMS_REPORT).json()[0]["service_request_id"]
    edited = [(k, "Edited text" if k == "description" else v) for k, v in FMS_REPORT]
    assert post(hub, edited).json()[0]["service_request_id"] == first


@pytest.mark.parametrize(
    ("fields", "key", "status", "description"),
    [
        (FMS_REPORT, "not-a-key", 403, "Invalid api_key received -- can't proceed with create_request."),
        ([("lat", "54.6"), ("long", "-5.6")], None, 400, "service_code was not provided"),
        ([("service_code", "potholes"), ("lat", "54.6"), ("long", "-5.6")], None, 404, "service_code potholes was not found"),
        ([("service_code", "fly-tipping"), ("description", "Sofa")], None, 400,
         "A full location parameter must be submitted: lat and long, address_string or address_id"),
    ],
)
def test_errors_are_in_georeport_form_with_the_right_status(
    hub: EmbeddedHub, fields: list[tuple[str, str]], key: str | None, status: int, description: str
) -> None:
    reply = post(hub, fields, key=key)
    assert reply.status_code == status and messages(ERRORS, reply.json()) == []
    assert reply.json() == [{"code": status, "description": description}]


def test_every_invalid_field_is_named_as_the_client_sent_it(hub: EmbeddedHub) -> None:
    fields = [(k, v) for k, v in FMS_REPORT if k != "attribute[size]"]
    fields = [(k, "40.1" if k == "lat" else "sofa" if v == "tyres" else v) for k, v in fields]
    reply = post(hub, fields)
    assert reply.status_code == 400 and messages(ERRORS, reply.json()) == []
    assert {e["description"] for e in reply.json()} == {
        "lat: Choose a place in the UK on the map",
        "attribute[waste_type]: 0 must be one of: household_bags, furniture, white_goods, building_rubble, garden_waste, tyres, asbestos, other",
        "attribute[size]: How much is there? is required",
    }


def test_an_unknown_request_is_not_found(hub: EmbeddedHub) -> None:
    reply = hub.client.get("/open311/v2/requests/EDC-0000000000.json")
    assert reply.status_code == 404 and messages(ERRORS, reply.json()) == []


def test_a_service_list_naming_an_unknown_field_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "services.yaml"
    bad.write_text("services:\n  - {service_code: x, service_name: X, description: X, form: f, fields: {a: {from: colour}}}\n")
    with pytest.raises(ConfigError, match="'colour' is not a GeoReport field"):
        load_services(bad)


def test_every_configured_service_names_a_form_and_its_fields() -> None:
    forms = {path.parent.name for path in Settings().schemas_dir.glob("*/[0-9]*.json")}
    for service in load_services(SERVICES).services:
        assert service.form in forms
