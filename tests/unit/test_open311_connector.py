"""The Open311 connector against the council Open311 simulator over loopback HTTP, and the simulator's
answers checked against the real GeoReport v2 JSON Schemas."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.base import DeliveryContext, Secrets
from connectors.open311 import Open311Connector, Open311Options
from hub.api.server_thread import ServerThread
from hub.errors import PermanentError, TransientError
from hub.intake.forms import schema_validator
from simulators.crm import FailurePlan
from simulators.open311 import PREFIX, Open311State, create_app
from tests.support.realworld import realworld

GEOREPORT = realworld("open311", "georeport-v2-schemas", module_level=True)
RECORD = {
    "service_code": "FLYTIP",
    "lat": 54.6536,
    "long": -5.6689,
    "address_string": "Lay-by on the A2 just past the marina",
    "email": "r.okafor@example.org",
    "first_name": "Rhiannon",
    "last_name": "O'Kafor",
    "description": "Fly-tipping, a car boot load\nWhere: Lay-by on the A2 just past the marina",
    "media_url": "https://files.example.org/uploads/ph-88c2e1.jpg",
    "attributes": {"waste_type": ["tyres", "household_bags"], "size": "car_boot", "seen_at": "2026-11-23T07:55:00+00:00"},
}


def georeport(name: str) -> Any:
    """A validator for one of the published GeoReport v2 schemas (their $refs resolve beside them)."""
    return schema_validator(json.loads((GEOREPORT / name).read_text()), GEOREPORT / name)


# GeoReport defines no JSON Schema for the POST reply: swagger.json's RequestResponse is the contract
POST_REPLY = schema_validator({"type": "array", "minItems": 1, "items": {"$ref": "swagger.json#/definitions/RequestResponse"}}, GEOREPORT / "post-reply.json")
# nor for errors: the spec's text says a list of {code, description}
ERRORS = schema_validator(
    {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["code", "description"],
     "properties": {"code": {"type": "integer"}, "description": {"type": "string", "minLength": 1}}}},
    GEOREPORT / "errors.json",
)


@pytest.fixture()
def council() -> Iterator[tuple[Open311State, str]]:
    state = Open311State(api_key="street-key-7f3a")
    server = ServerThread(create_app(state)).start()
    try:
        yield state, server.url + PREFIX
    finally:
        server.stop()


def connector(endpoint: str, key: str = "street-key-7f3a", **options: Any) -> Open311Connector:
    settings = Open311Options(endpoint=endpoint, api_key_env="OPEN311_KEY", jurisdiction_id="eastmoor.example.org", **options)
    return Open311Connector("street-cleansing", settings, Secrets({"OPEN311_KEY": key}))


def context(reference: str = "EDC-3F9KD2QX7M") -> DeliveryContext:
    return DeliveryContext(reference, "street-cleansing", 1, f"{reference}/street-cleansing", 1, "eastmoor", "report-fly-tipping")


def test_a_service_request_reaches_the_council_with_every_georeport_field(council: tuple[Open311State, str]) -> None:
    state, url = council
    outcome = connector(url).send(RECORD, context())
    [stored] = state.requests()
    assert outcome.external_reference == stored["service_request_id"] == "100001"
    assert stored["fields"] == {
        "jurisdiction_id": "eastmoor.example.org", "service_code": "FLYTIP", "lat": "54.6536", "long": "-5.6689",
        "address_string": "Lay-by on the A2 just past the marina", "email": "r.okafor@example.org",
        "first_name": "Rhiannon", "last_name": "O'Kafor", "description": RECORD["description"],
        "media_url": "https://files.example.org/uploads/ph-88c2e1.jpg",
    }
    assert stored["attributes"] == {
        "waste_type": ["tyres", "household_bags"], "size": ["car_boot"], "seen_at": ["2026-11-23T07:55:00+00:00"],
        "hub_reference": ["EDC-3F9KD2QX7M/street-cleansing"],
    }


def test_the_post_is_form_encoded_with_attribute_brackets_as_the_spec_shows() -> None:
    fields = connector("http://127.0.0.1:9").form_fields(RECORD, "EDC-1/street-cleansing")
    assert ("attribute[waste_type][]", "tyres") in fields and ("attribute[waste_type][]", "household_bags") in fields
    assert ("attribute[size]", "car_boot") in fields and ("attribute[hub_reference]", "EDC-1/street-cleansing") in fields
    assert fields[0] == ("jurisdiction_id", "eastmoor.example.org")


def test_a_repeated_delivery_is_the_same_service_request(council: tuple[Open311State, str]) -> None:
    state, url = council
    first = connector(url).send(RECORD, context())
    again = connector(url).send(RECORD, context())
    assert first == again and state.stats()["requests"] == 1 and state.stats()["duplicates"] == 1


def test_a_batch_service_gives_a_token_which_is_kept_as_the_reference(council: tuple[Open311State, str]) -> None:
    state, url = council
    record = {"service_code": "GRAFFITI", "address_string": "Underpass, Station Road", "description": "Tags on the wall"}
    outcome = connector(url).send(record, context())
    [stored] = state.requests()
    assert outcome.external_reference == f"token:{stored['token']}"
    token = httpx.get(f"{url}/tokens/{stored['token']}.json").json()
    assert token == [{"service_request_id": stored["service_request_id"], "token": stored["token"]}]


def test_the_service_code_comes_from_the_options_when_the_record_has_none(council: tuple[Open311State, str]) -> None:
    state, url = council
    connector(url, service_code="DOGFOUL").send({"address_id": "100023336956", "description": "Outside the school gates"}, context())
    assert state.requests()[0]["service_code"] == "DOGFOUL"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_are_transient(council: tuple[Open311State, str], status: int) -> None:
    state, url = council
    state.arm(FailurePlan(count=1, status=status))
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        connector(url).send(RECORD, context())
    assert connector(url).send(RECORD, context()).external_reference == "100001"


def test_a_timeout_is_transient(council: tuple[Open311State, str]) -> None:
    state, url = council
    state.arm(FailurePlan(count=1, mode="timeout", seconds=1.0))
    with pytest.raises(TransientError, match="no reply"):
        connector(url, timeout_seconds=0.2).send(RECORD, context())


def test_an_unreachable_server_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="could not reach"):
        connector(f"http://127.0.0.1:{port}{PREFIX}").send(RECORD, context())


@pytest.mark.parametrize(
    ("change", "key", "status", "message"),
    [
        ({}, "wrong-key", 403, "Invalid api_key"),
        ({"service_code": "POTHOLE"}, "street-key-7f3a", 404, "service_code POTHOLE was not found"),
        ({"attributes": {"waste_type": ["sofa"], "size": "car_boot"}}, "street-key-7f3a", 400, "sofa is not one of"),
        ({"attributes": {"waste_type": ["tyres"]}}, "street-key-7f3a", 400, r"attribute\[size\] is required"),
    ],
)
def test_refusals_are_permanent_with_the_councils_own_words(
    council: tuple[Open311State, str], change: dict[str, Any], key: str, status: int, message: str
) -> None:
    _, url = council
    with pytest.raises(PermanentError, match=f"HTTP {status}: .*{message}"):
        connector(url, key=key).send({**RECORD, **change}, context())


def test_records_the_council_could_not_take_are_found_offline() -> None:
    problems = connector("http://127.0.0.1:9").validate_record(
        {"lat": 54.6, "description": "x" * 4001, "colour": "red", "attributes": {"size": {"big": True}}}
    )
    assert problems == [
        "unknown field 'colour' (GeoReport v2 fields: account_id, address_id, address_string, attributes, description, "
        "device_id, email, first_name, last_name, lat, long, media_url, phone, service_code)",
        "no service_code in the record or the connector's options",
        "no location: give lat and long, address_string or address_id",
        "lat and long must be given together",
        "description is 4001 characters; Open311 allows 4000",
        "attribute 'size' must be a value or a list of values",
    ]
    with pytest.raises(PermanentError, match="no location"):
        connector("http://127.0.0.1:9").send({"service_code": "FLYTIP"}, context())


def test_check_finds_the_service_and_reports_a_missing_one(council: tuple[Open311State, str]) -> None:
    _, url = council
    assert connector(url, service_code="FLYTIP").check().ok
    health = connector(url, service_code="POTHOLE").check()
    assert not health.ok and "POTHOLE" in health.detail and "FLYTIP" in health.detail
    assert "GeoReport v2 POST" in connector(url).describe()


def test_simulator_answers_are_valid_against_the_georeport_schemas(council: tuple[Open311State, str]) -> None:
    state, url = council
    services = httpx.get(f"{url}/services.json").json()
    assert georeport("services.json").is_valid(services) and len(services) == 3
    for service in services:
        definition = httpx.get(f"{url}/services/{service['service_code']}.json").json()
        assert [e.message for e in georeport("service-definition.json").iter_errors(definition)] == []
    reply = httpx.post(f"{url}/requests.json", data={**_form(RECORD), "api_key": "street-key-7f3a"})
    assert reply.status_code == 200 and [e.message for e in POST_REPLY.iter_errors(reply.json())] == []
    request_id = reply.json()[0]["service_request_id"]
    state.close(request_id, "Cleared on 24 November.")
    found = httpx.get(f"{url}/requests/{request_id}.json").json()
    assert [e.message for e in georeport("requests.json").iter_errors(found)] == []
    assert found[0]["status"] == "closed" and found[0]["status_notes"] == "Cleared on 24 November."
    for response in (
        httpx.post(f"{url}/requests.json", data={"api_key": "nope"}),
        httpx.get(f"{url}/services/NOPE.json"),
        httpx.get(f"{url}/requests/999.json"),
    ):
        assert response.status_code in (403, 404) and ERRORS.is_valid(response.json())


def _form(record: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {k: str(v) for k, v in record.items() if k != "attributes"}
    for code, value in record["attributes"].items():
        fields[f"attribute[{code}]" + ("[]" if isinstance(value, list) else "")] = value
    return fields


def test_simulator_refuses_a_request_without_a_location(council: tuple[Open311State, str]) -> None:
    _, url = council
    reply = httpx.post(f"{url}/requests.json", data={"api_key": "street-key-7f3a", "service_code": "DOGFOUL"})
    assert reply.status_code == 400 and "location" in reply.json()[0]["description"]

