"""The SOAP back offices over real loopback sockets: the revenues (Civica UH) and waste (Bartec-like)
simulators through the SOAP connector, then through the whole embedded hub, and the Bartec-like
replies compared element by element with real Bartec replies."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from lxml import etree

from connectors.base import DeliveryContext, Secrets
from connectors.registry import ConnectorRegistry
from connectors.soap import SoapConnector
from hub.api.server_thread import ServerThread
from hub.config.files import load_config
from hub.errors import PermanentError, TransientError
from simulators import revenues, waste
from tests.support import embedded
from tests.support.embedded import EmbeddedHub
from tests.support.realworld import realworld

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"REVENUES_PASSWORD": "uh-" + "secret-5521", "WASTE_PASSWORD": "bartec-" + "secret-8810"}


@pytest.fixture()
def offices() -> Iterator[tuple[revenues.RevenuesState, waste.WasteState, dict[str, str]]]:
    uh, bartec = revenues.RevenuesState("hub", PASSWORDS["REVENUES_PASSWORD"]), waste.WasteState("hub", PASSWORDS["WASTE_PASSWORD"])
    servers = [ServerThread(revenues.create_app(uh)).start(), ServerThread(waste.create_app(bartec)).start()]
    env = {**PASSWORDS, "REVENUES_URL": servers[0].url, "WASTE_URL": servers[1].url}
    yield uh, bartec, env
    for server in servers:
        server.stop()


def connector(tmp_path: Path, env: dict[str, str], name: str, **options: Any) -> SoapConnector:
    """Built from this area's own configuration file, as the hub builds it."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / f"{name}.yaml", folder)
    config = load_config(folder, env).connectors[name]
    config = config.model_copy(update={"options": {**config.options, **options}})
    built = ConnectorRegistry.from_entry_points().build(config, Secrets(env))
    assert isinstance(built, SoapConnector)
    return built


def case(form: str, connector_name: str, sample: str) -> tuple[dict[str, Any], DeliveryContext]:
    doc = json.loads((ROOT / "mappings" / f"{form}.{connector_name}.cases" / f"{sample}.json").read_text(encoding="utf-8"))
    meta = doc["meta"]
    context = DeliveryContext(meta["reference"], connector_name, 1, meta["idempotency_key"], 1, meta["tenant"], form)
    return doc["expected"], context


def test_a_payment_plan_reaches_civica_uh_once_however_often_it_is_sent(tmp_path: Path, offices: Any) -> None:
    uh, _, env = offices
    record, context = case("rent-arrears-payment-plan", "revenues", "weekly-direct-debit")
    uh_connector = connector(tmp_path, env, "revenues")
    assert uh_connector.check().ok
    first = uh_connector.send(record, context)
    assert uh_connector.send(record, context) == first and first.external_reference == "ARA0000001"
    assert uh.summary() == {"agreements": 1, "requests": 2, "duplicates": 1}
    reader = connector(tmp_path, env, "revenues", operation="GetArrearsAgreementByRef")
    assert reader.send({"dto": {"SourceSystem": "COUNCIL-HUB", "Reference": "ARA0000001"}}, context) == first


def test_a_reply_that_comes_too_late_is_retried_and_still_makes_one_service_request(tmp_path: Path, offices: Any) -> None:
    _, bartec, env = offices
    record, context = case("bulky-waste-collection", "waste", "sofa-and-fridge")
    bartec_connector = connector(tmp_path, env, "waste", timeout_seconds=0.5)
    requests.post(f"{env['WASTE_URL']}/_control/fail", json={"mode": "hang", "seconds": 1.5}, timeout=5)
    with pytest.raises(TransientError, match="no reply from waste within 0.5 s"):
        bartec_connector.send(record, context)
    assert bartec_connector.send(record, context).external_reference == "SR00051627"
    assert bartec.summary() == {"service_requests": 1, "requests": 2, "duplicates": 1}


@pytest.mark.parametrize(("mode", "error"), [("server_fault", TransientError), ("status", TransientError), ("client_fault", PermanentError)])
def test_each_simulator_fails_on_command_as_the_connector_classifies_it(tmp_path: Path, offices: Any, mode: str, error: type[Exception]) -> None:
    _, _, env = offices
    for name, form, sample in (("revenues", "rent-arrears-payment-plan", "monthly-minimal"), ("waste", "garden-waste-subscription", "new-two-bins")):
        record, context = case(form, name, sample)
        url = env["REVENUES_URL" if name == "revenues" else "WASTE_URL"]
        requests.post(f"{url}/_control/fail", json={"mode": mode}, timeout=5)
        with pytest.raises(error):
            connector(tmp_path, env, name).send(record, context)


@pytest.fixture()
def hub(tmp_path: Path, offices: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedHub]:
    """The embedded hub with the SOAP simulators' URLs and credentials in its environment."""
    _, _, env = offices
    # embedded_hub builds its own environment; add ours until it takes extra variables
    load, build = embedded.load_config, embedded.Runtime.build
    monkeypatch.setattr(embedded, "load_config", lambda directory, environ: load(directory, {**environ, **env}))
    monkeypatch.setattr(embedded.Runtime, "build", lambda settings, environ, **kw: build(settings, {**environ, **env}, **kw))
    with embedded.embedded_hub(tmp_path) as running:
        yield running


def sample(form: str, name: str) -> Any:
    return json.loads((ROOT / "schemas" / form / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def only_delivery(hub: EmbeddedHub, form: str, name: str) -> dict[str, Any]:
    response = hub.post(form, sample(form, name))
    assert response.status_code == 202, response.text
    [delivery] = hub.wait_until_settled(response.json()["reference"])["deliveries"]
    return dict(delivery)


def test_the_hub_delivers_every_soap_form_and_shows_the_back_office_reference(hub: EmbeddedHub, offices: Any) -> None:
    uh, bartec, _ = offices
    plan = only_delivery(hub, "rent-arrears-payment-plan", "weekly-direct-debit")
    bulky = only_delivery(hub, "bulky-waste-collection", "five-items-back-lane")
    garden = only_delivery(hub, "garden-waste-subscription", "renewal-one-bin")
    assert (plan["connector"], plan["state"], plan["external_reference"]) == ("revenues", "delivered", "ARA0000001")
    assert (bulky["state"], garden["state"]) == ("delivered", "delivered")
    assert {bulky["external_reference"], garden["external_reference"]} == {"SR00051627", "SR00051628"}
    made = {r.service_code: r.request for r in bartec.requests_made.values()}
    assert made[garden["external_reference"]]["ServiceTypeID"] == 9  # a renewal, not a new subscription
    assert made[bulky["external_reference"]]["ExternalReference"].endswith("/waste")
    assert uh.agreements["ARA0000001"].idempotency_key.endswith("/revenues")


def test_a_server_fault_is_retried_and_then_delivered(hub: EmbeddedHub, offices: Any) -> None:
    uh, _, env = offices
    requests.post(f"{env['REVENUES_URL']}/_control/fail", json={"mode": "server_fault", "count": 1}, timeout=5)
    delivery = only_delivery(hub, "rent-arrears-payment-plan", "fortnightly-ill-health")
    assert (delivery["state"], delivery["attempts"], delivery["external_reference"]) == ("delivered", 2, "ARA0000001")
    assert uh.summary()["agreements"] == 1


def test_a_client_fault_parks_at_once_with_the_reason(hub: EmbeddedHub, offices: Any) -> None:
    _, bartec, env = offices
    requests.post(f"{env['WASTE_URL']}/_control/fail", json={"mode": "client_fault", "message": "Crew rota is locked"}, timeout=5)
    delivery = only_delivery(hub, "bulky-waste-collection", "single-mattress")
    assert (delivery["state"], delivery["attempts"]) == ("parked", 1)
    assert delivery["last_error"] == "waste refused the record with a fault (s:Client): Crew rota is locked"
    assert bartec.summary()["service_requests"] == 0


def test_a_refusal_in_a_normal_bartec_reply_parks_with_bartecs_message(hub: EmbeddedHub) -> None:
    payload = {**sample("garden-waste-subscription", "new-two-bins"), "uprn": "100000000001"}
    response = hub.post("garden-waste-subscription", payload)
    [delivery] = hub.wait_until_settled(response.json()["reference"])["deliveries"]
    assert (delivery["state"], delivery["attempts"]) == ("parked", 1)
    assert delivery["last_error"] == "waste refused the record: Error in 'API.pr_ServiceRequest_Create': Specified UPRN does not exist"


def shape(node: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every element path (namespace-qualified names) with its attribute names; text is ignored."""
    paths: set[tuple[str, ...]] = set()
    for child in node:
        if not isinstance(child.tag, str):
            continue
        path = (*prefix, child.tag)
        attributes = sorted("@" + a for a in child.attrib if not a.startswith("{http://www.w3.org/2001/XMLSchema-instance}"))
        paths |= {(*path, *attributes)} | shape(child, path)
    return paths


def real_reply(name: str) -> set[tuple[str, ...]]:
    # the saved replies are SOAP bodies' contents; some use xsi: declared on the envelope they came in
    text = realworld("waste-bartec", "replies", name).read_bytes()
    return shape(etree.fromstring(b'<body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' + text + b"</body>"))


@pytest.mark.parametrize(
    ("operation", "arguments", "real"),
    [
        ("Premises_Get", {"UPRN": "100090215423"}, "get_premises.xml"),
        ("ServiceRequests_Types_Get", {}, "servicerequests_types_get.xml"),
        ("ServiceRequests_Statuses_Get", {}, "servicerequests_status_get.xml"),
        ("ServiceRequest_Create", {"UPRN": "100090215423", "ServiceTypeID": 1, "DateRequested": "2026-11-23T10:05:33"}, "servicerequest_create.xml"),
        ("ServiceRequest_Create", {"UPRN": "999", "ServiceTypeID": 1, "DateRequested": "2026-11-23T10:05:33"}, "servicerequest_create_error.xml"),
    ],
)
def test_bartec_like_replies_have_exactly_the_element_structure_of_real_bartec_replies(
    tmp_path: Path, offices: Any, operation: str, arguments: dict[str, Any], real: str
) -> None:
    _, _, env = offices
    client = connector(tmp_path, env, "waste")._client
    message = etree.tostring(client.create_message(client.service, operation, **arguments))
    response = requests.post(
        f"{env['WASTE_URL']}{waste.ASMX_PATH}", data=message, timeout=5, auth=("hub", PASSWORDS["WASTE_PASSWORD"]),
        headers={"SOAPAction": f'"http://bartec-systems.com/{operation}"', "Content-Type": "text/xml; charset=utf-8"},
    )
    assert response.status_code == 200
    body = etree.fromstring(response.content).find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    assert shape(body) == real_reply(real)
