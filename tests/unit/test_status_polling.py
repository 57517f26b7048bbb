"""The hub polls back offices that cannot push: Open311 `GET requests.json` and Bartec's
ServiceRequests_Get, against the simulators (and real Bartec replies); each change joins the timeline once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import DeliveryContext, Secrets
from connectors.open311 import Open311Connector, Open311Options
from connectors.registry import ConnectorRegistry
from connectors.soap import SoapConnector
from hub.api.server_thread import ServerThread
from hub.config.files import load_config
from hub.config.settings import REPO_ROOT, Settings
from hub.delivery.status_polling import StatusPoller
from hub.errors import TransientError
from hub.intake.forms import schema_validator
from hub.store import status_events
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from simulators.waste import WasteState
from simulators.waste import create_app as create_waste
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.realworld import realworld

SCHEMAS = Settings().schemas_dir
FLYTIP = {"service_code": "FLYTIP", "lat": 54.65, "long": -5.67, "description": "Tyres in the lay-by",
          "attributes": {"waste_type": ["tyres"], "size": "car_boot"}}


def sample(form_id: str, name: str) -> Any:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture()
def council() -> Iterator[tuple[Open311State, str]]:
    state = Open311State(api_key="street-key-2c81")
    server = ServerThread(create_open311(state)).start()
    yield state, server.url
    server.stop()


def open311(url: str) -> Open311Connector:
    options = Open311Options(endpoint=url + PREFIX, api_key_env="KEY", jurisdiction_id="eastmoor.example.org")
    return Open311Connector("street-cleansing", options, Secrets({"KEY": "street-key-2c81"}))


def sent(connector: Open311Connector, record: dict[str, Any], reference: str) -> str:
    context = DeliveryContext(reference, "street-cleansing", 1, f"{reference}/street-cleansing", 1, "eastmoor", "report-fly-tipping")
    found = connector.send(record, context).external_reference
    assert found is not None
    return found


def test_open311_polling_reads_status_notes_and_update_time_for_many_requests_at_once(council: tuple[Open311State, str]) -> None:
    state, url = council
    connector = open311(url)
    first, second = sent(connector, FLYTIP, "EDC-1"), sent(connector, FLYTIP, "EDC-2")
    assert httpx.post(f"{url}/_control/requests/{second}/status", json={"status": "closed", "status_notes": "Cleared on Tuesday"}).status_code == 200
    reports = {r.external_reference: r for r in connector.poll_status([first, second, "999999"])}
    assert set(reports) == {first, second}  # a request the server does not know is left out
    assert (reports[first].status, reports[first].message) == ("open", None)
    assert (reports[second].status, reports[second].message) == ("closed", "Cleared on Tuesday")
    assert reports[second].occurred_at is not None and reports[second].occurred_at.tzinfo is not None


def test_the_simulators_requests_list_matches_the_georeport_v2_schema(council: tuple[Open311State, str]) -> None:
    _, url = council
    connector = open311(url)
    ids = [sent(connector, FLYTIP, f"EDC-{n}") for n in range(3)]
    reply = httpx.get(f"{url}{PREFIX}/requests.json", params={"service_request_id": ",".join(ids[:2]), "jurisdiction_id": "eastmoor.example.org"})
    schema = realworld("open311", "georeport-v2-schemas", "requests.json")
    assert [e.message for e in schema_validator(json.loads(schema.read_text()), schema).iter_errors(reply.json())] == []
    assert [r["service_request_id"] for r in reply.json()] == ids[:2]


def test_a_batch_service_requests_token_is_turned_into_its_id_before_polling(council: tuple[Open311State, str]) -> None:
    _, url = council
    connector = open311(url)
    token = sent(connector, {"service_code": "GRAFFITI", "address_string": "Underpass, Mill Lane"}, "EDC-3")
    assert token.startswith("token:")
    [report] = connector.poll_status([token])
    assert (report.external_reference, report.status) == (token, "open")


def test_an_open311_server_that_is_down_is_a_transient_failure(council: tuple[Open311State, str]) -> None:
    state, url = council
    connector = open311(url)
    request_id = sent(connector, FLYTIP, "EDC-4")
    httpx.post(f"{url}/_control/fail", json={"mode": "status", "status": 503, "count": 5})
    # the failure plan is for POSTs: a GET is answered; a server that is gone is not
    assert connector.poll_status([request_id])[0].status == "open"
    gone = open311("http://127.0.0.1:9")
    with pytest.raises(TransientError):
        gone.poll_status([request_id])


class StagedBartec(httpx.BaseTransport):
    """Answers ServiceRequests_Get with a real Bartec reply file."""

    def __init__(self, reply_file: str) -> None:
        self.body = realworld("waste-bartec", "replies", reply_file).read_text()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        envelope = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
                    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Body>' + self.body + "</s:Body></s:Envelope>")
        return httpx.Response(200, headers={"Content-Type": "text/xml; charset=utf-8"}, content=envelope.encode(), request=request)


def waste_connector(tmp_path: Path, env: dict[str, str]) -> SoapConnector:
    shutil.copy(REPO_ROOT / "config" / "waste.yaml", tmp_path / "waste.yaml")
    config = load_config(tmp_path, env).connectors["waste"]
    connector = ConnectorRegistry.from_entry_points().build(config, Secrets(env))
    assert isinstance(connector, SoapConnector)
    return connector


@pytest.mark.parametrize(("reply_file", "status"), [("servicerequests_get_SR1.xml", "OPEN"), ("servicerequests_get_SR4.xml", "ASSIGNED")])
def test_bartec_polling_reads_the_service_status_of_a_real_servicerequests_get_reply(tmp_path: Path, reply_file: str, status: str) -> None:
    connector = waste_connector(tmp_path, {"WASTE_PASSWORD": "bartec-pw"})
    staged = StagedBartec(reply_file)
    connector._transport.http = httpx.Client(transport=staged, headers=connector._transport.http.headers)
    [report] = connector.poll_status(["SR1"])
    assert (report.external_reference, report.status, report.message) == ("SR1", status, None)
    [request] = staged.sent
    assert request.headers["SOAPAction"] == '"http://bartec-systems.com/ServiceRequests_Get"'
    assert b"<ns0:ServiceCode>SR1</ns0:ServiceCode>" in request.content and request.headers["Authorization"].startswith("Basic ")


def test_bartec_polling_follows_the_waste_simulator_as_the_team_moves_a_request_on(tmp_path: Path) -> None:
    state = WasteState("hub", "bartec-pw")
    server = ServerThread(create_waste(state)).start()
    try:
        connector = waste_connector(tmp_path, {"WASTE_PASSWORD": "bartec-pw", "WASTE_URL": server.url})
        record = {"UPRN": "100090215423", "ServiceTypeID": 8, "DateRequested": "2026-11-23T10:05:33",
                  "extendedData": {"ServiceRequests_CreateServiceRequests_CreateFields": [
                      {"FieldName": "BINS", "FieldValue": "1"}, {"FieldName": "START_DATE", "FieldValue": "01/12/2026"},
                      {"FieldName": "PAYMENT_REF", "FieldValue": "GW-1"}]}}
        context = DeliveryContext("EDC-5", "waste", 1, "EDC-5/waste", 1, "eastmoor", "garden-waste-subscription")
        code = connector.send(record, context).external_reference
        assert code is not None
        assert [r.status for r in connector.poll_status([code, "SR99999999"])] == ["OPEN"]
        assert httpx.post(f"{server.url}/_control/service-requests/{code}/status", json={"status": "IN PROGRESS"}).status_code == 200
        assert httpx.post(f"{server.url}/_control/service-requests/{code}/status", json={"status": "EXPLODED"}).status_code == 422
        assert [r.status for r in connector.poll_status([code])] == ["IN PROGRESS"]
    finally:
        server.stop()


@dataclass
class Offices:
    hub: EmbeddedHub
    street: Open311State
    street_url: str
    waste: WasteState
    waste_url: str


@pytest.fixture()
def offices(tmp_path: Path) -> Iterator[Offices]:
    street, waste = Open311State(api_key="street-key-2c81"), WasteState("hub", "bartec-pw")
    servers = [ServerThread(create_open311(street)).start(), ServerThread(create_waste(waste)).start()]
    env = {"STREET_CLEANSING_OPEN311_URL": servers[0].url + PREFIX, "STREET_CLEANSING_OPEN311_API_KEY": street.api_key,
           "WASTE_URL": servers[1].url, "WASTE_PASSWORD": "bartec-pw"}
    try:
        with embedded_hub(tmp_path, env=env) as hub:
            yield Offices(hub, street, servers[0].url, waste, servers[1].url)
    finally:
        for server in servers:
            server.stop()


def polled(hub: EmbeddedHub, reference: str, connector: str) -> list[tuple[str | None, str | None]]:
    return [(e["status"], e["source"]) for e in hub.status(reference).json()["timeline"] if e["event"] == "status" and e["connector"] == connector]


def test_the_poller_records_each_status_change_once_and_stops_at_a_final_one(offices: Offices) -> None:
    hub = offices.hub
    reference = hub.post("report-fly-tipping", sample("report-fly-tipping", "coordinates-anonymous")).json()["reference"]
    deliveries = {d["connector"]: d for d in hub.wait_until_settled(reference)["deliveries"]}
    request_id = deliveries["street-cleansing"]["external_reference"]
    poller = StatusPoller(hub.runtime)
    assert poller.poll("street-cleansing") == 1
    assert poller.poll("street-cleansing") == 0  # nothing new
    assert polled(hub, reference, "street-cleansing") == [("open", "poll")]

    httpx.post(f"{offices.street_url}/_control/requests/{request_id}/status", json={"status": "closed", "status_notes": "Cleared"})
    assert poller.poll("street-cleansing") == 1
    assert polled(hub, reference, "street-cleansing") == [("open", "poll"), ("closed", "poll")]
    [closed] = [e for e in hub.status(reference).json()["timeline"] if e["status"] == "closed"]
    assert closed["message"] == "Cleared" and closed["external_reference"] == request_id
    # closed is final: the record is not asked about again
    assert status_events.pollable(hub.runtime.engine, "street-cleansing", datetime.now(UTC) - timedelta(days=365), 0, 10) == []


def test_the_poller_asks_bartec_for_bulky_waste_requests_and_records_their_progress(offices: Offices) -> None:
    hub = offices.hub
    reference = hub.post("bulky-waste-collection", sample("bulky-waste-collection", "single-mattress")).json()["reference"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    poller = StatusPoller(hub.runtime)
    assert poller.run() == {"street-cleansing": 0, "waste": 1}
    offices.waste.set_status(delivery["external_reference"], "ASSIGNED")
    assert poller.poll("waste") == 1
    offices.waste.set_status(delivery["external_reference"], "OPEN")  # moved back: a change too
    assert poller.poll("waste") == 1
    assert polled(hub, reference, "waste") == [("OPEN", "poll"), ("ASSIGNED", "poll"), ("OPEN", "poll")]


def test_each_connector_is_polled_only_when_its_interval_has_passed(offices: Offices) -> None:
    now = [1000.0]
    poller = StatusPoller(offices.hub.runtime, clock=lambda: now[0])
    assert poller.every == {"street-cleansing": 120.0, "waste": 120.0}
    assert StatusPoller.tick(offices.hub.runtime) == 120.0
    assert set(poller.run()) == {"street-cleansing", "waste"}
    now[0] += 60
    assert poller.run() == {}
    now[0] += 61
    assert set(poller.run()) == {"street-cleansing", "waste"}


def test_a_bounded_batch_per_run_still_reaches_every_open_record(offices: Offices) -> None:
    hub = offices.hub
    references = [hub.post("report-fly-tipping", sample("report-fly-tipping", "coordinates-anonymous")).json()["reference"] for _ in range(3)]
    for reference in references:
        hub.wait_until_settled(reference)
    poller = StatusPoller(hub.runtime, batch=2)
    assert [poller.poll("street-cleansing") for _ in range(3)] == [2, 1, 0]
    assert all(polled(hub, r, "street-cleansing") == [("open", "poll")] for r in references)


def test_records_received_before_the_window_are_not_asked_about(offices: Offices) -> None:
    hub = offices.hub
    reference = hub.post("report-fly-tipping", sample("report-fly-tipping", "coordinates-anonymous")).json()["reference"]
    hub.wait_until_settled(reference)
    before = offices.street.stats()
    assert StatusPoller(hub.runtime, window=timedelta(0)).poll("street-cleansing") == 0
    assert offices.street.stats() == before and polled(hub, reference, "street-cleansing") == []


def test_a_back_office_that_cannot_be_reached_is_tried_again_next_time(offices: Offices) -> None:
    hub = offices.hub
    reference = hub.post("report-fly-tipping", sample("report-fly-tipping", "coordinates-anonymous")).json()["reference"]
    hub.wait_until_settled(reference)
    connectors = hub.runtime.config.connectors
    working = connectors["street-cleansing"]
    hub.runtime._connectors.pop("street-cleansing").close()
    connectors["street-cleansing"] = working.model_copy(update={"options": {**working.options, "endpoint": "http://127.0.0.1:9/open311/v2"}})
    poller = StatusPoller(hub.runtime)
    assert poller.poll("street-cleansing") == 0
    hub.runtime._connectors.pop("street-cleansing").close()
    connectors["street-cleansing"] = working
    assert poller.poll("street-cleansing") == 1


def test_a_connector_that_cannot_be_polled_is_reported_and_skipped(offices: Offices) -> None:
    hub = offices.hub
    crm = hub.runtime.config.connectors["crm"]
    hub.runtime.config.connectors["crm"] = crm.model_copy(update={"status_updates": crm.status_updates.model_copy(update={"poll_seconds": 30.0})})  # type: ignore[union-attr]
    poller = StatusPoller(hub.runtime)
    reference = hub.post("general-enquiry", sample("general-enquiry", "question-only")).json()["reference"]
    hub.wait_until_settled(reference)
    assert poller.poll("crm") == 0 and poller.run()["crm"] == 0
    assert "crm" in poller.every and StatusPoller.tick(hub.runtime) == 30.0
