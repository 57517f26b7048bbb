"""The waste simulator answers like Bartec Collective: premises by UPRN, types, statuses and
service requests, one request per external reference, refusals in Errors, failures on command."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from connectors.soap_loader import load_client
from simulators.revenues import SOAP11
from simulators.waste import ASMX_PATH, WSDL, WasteState, create_app

BARTEC, SHARED = "http://bartec-systems.com/", "http://www.bartec-systems.com"
CLIENT, _ = load_client(str(WSDL), {}, 5, 5)


def create_request(**overrides: Any) -> dict[str, Any]:
    fields = [("ITEM_01", "Sofa"), ("COLLECTION_DATE", "04/12/2026"), ("PAYMENT_REF", "BWC-20261123-0042")]
    return {
        "UPRN": "100090215423", "ServiceTypeID": 7, "DateRequested": "2026-11-23T10:05:33", "ExternalReference": "EDC-9RT2KX7M4P/waste",
        "extendedData": {"ServiceRequests_CreateServiceRequests_CreateFields": [{"FieldName": n, "FieldValue": v} for n, v in fields]},
        **overrides,
    }


def call(client: TestClient, operation: str, auth: tuple[str, str] = ("hub", "pw"), **arguments: Any) -> Any:
    message = etree.tostring(CLIENT.create_message(CLIENT.service, operation, **arguments))
    response = client.post(ASMX_PATH, content=message, headers={"SOAPAction": f'"{BARTEC}{operation}"'}, auth=auth)
    return response.status_code, etree.fromstring(response.content) if response.content.startswith(b"<?xml") else response.text


def create_result(reply: Any) -> dict[str, str | None]:
    ns = "{http://www.bartec-systems.com/ServiceRequests_Types_Get.xsd}"
    node = reply.find(f"{{{SOAP11}}}Body/{{{BARTEC}}}ServiceRequest_CreateResponse/{ns}ServiceRequest_CreateResult")
    return {"code": node.findtext(f"{ns}ServiceCode"), "error": node.findtext(f"{ns}Errors/{{{SHARED}}}Message")}


@pytest.fixture()
def state() -> WasteState:
    return WasteState("hub", "pw")


@pytest.fixture()
def client(state: WasteState) -> TestClient:
    return TestClient(create_app(state), base_url="http://bartec.eastmoor.test")


def test_the_wsdl_is_served_with_the_simulators_own_address(client: TestClient) -> None:
    assert f'location="http://bartec.eastmoor.test{ASMX_PATH}"' in client.get(f"{ASMX_PATH}?WSDL").text


def test_a_service_request_gets_a_service_code_and_a_resend_gets_the_same_one(client: TestClient, state: WasteState) -> None:
    first = create_result(call(client, "ServiceRequest_Create", **create_request())[1])
    again = create_result(call(client, "ServiceRequest_Create", **create_request())[1])
    other = create_result(call(client, "ServiceRequest_Create", **create_request(ExternalReference="EDC-3MH8WQ2Z6K/waste"))[1])
    assert first == again == {"code": "SR00051627", "error": None}
    assert other["code"] == "SR00051628"
    assert state.summary() == {"service_requests": 2, "requests": 3, "duplicates": 1}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"UPRN": "100000000000"}, "Specified UPRN does not exist"),
        ({"ServiceTypeID": 404}, "Specified service type does not exist"),
        ({"extendedData": {"ServiceRequests_CreateServiceRequests_CreateFields": [{"FieldName": "ITEM_01", "FieldValue": "Sofa"}]}},
         "Mandatory extended data field COLLECTION_DATE is missing"),
        ({"ServiceTypeID": 8}, "Extended data field ITEM_01 is not defined for service type 8"),
    ],
)
def test_refusals_are_reported_in_errors_as_bartec_does(client: TestClient, overrides: dict[str, Any], message: str) -> None:
    status, reply = call(client, "ServiceRequest_Create", **create_request(**overrides))
    assert status == 200
    assert create_result(reply) == {"code": None, "error": f"Error in 'API.pr_ServiceRequest_Create': {message}"}


def test_premises_are_found_by_uprn(client: TestClient) -> None:
    reply = call(client, "Premises_Get", UPRN="100090215487")[1]
    assert [e.text for e in reply.iter(f"{{{SHARED}}}UPRN")] == ["100090215487"]
    assert reply.findtext(f".//{{{SHARED}}}Street") == "KILN LANE"
    assert call(client, "Premises_Get", UPRN="100000000000")[1].find(f".//{{{SHARED}}}UPRN") is None


def test_types_and_statuses_include_bulky_and_garden_waste(client: TestClient) -> None:
    types = call(client, "ServiceRequests_Types_Get")[1]
    names = [e.findtext(f"{{{SHARED}}}Name") for e in types.iter("{http://www.bartec-systems.com/ServiceRequests_Types_Get.xsd}ServiceType")]
    assert {"Bulky collection", "GW NEW SUBSCRIPTION", "GW RENEWAL"} <= set(names)
    statuses = call(client, "ServiceRequests_Statuses_Get")[1]
    assert {e.text for e in statuses.iter(f"{{{SHARED}}}Status")} == {"PENDING", "OPEN", "ASSIGNED", "IN PROGRESS", "CLOSED"}


def test_wrong_credentials_are_refused_with_http_401(client: TestClient) -> None:
    status, text = call(client, "ServiceRequests_Types_Get", auth=("hub", "guess"))
    assert status == 401 and text == "Unauthorized"


def test_an_unknown_soap_action_gets_the_asmx_client_fault(client: TestClient) -> None:
    response = client.post(ASMX_PATH, content=b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>',
                           headers={"SOAPAction": '"http://bartec-systems.com/Jobs_Get"'}, auth=("hub", "pw"))
    fault = etree.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert response.status_code == 500 and fault.findtext("faultcode") == "s:Client"
    assert "did not recognize the value of HTTP Header SOAPAction: http://bartec-systems.com/Jobs_Get" in fault.findtext("faultstring")


def test_a_hang_makes_the_request_and_then_replies_late(client: TestClient, state: WasteState) -> None:
    client.post("/_control/fail", json={"mode": "hang", "seconds": 0.2})
    assert create_result(call(client, "ServiceRequest_Create", **create_request())[1])["code"] == "SR00051627"
    assert client.get("/_control/service-requests").json()[0]["external_reference"] == "EDC-9RT2KX7M4P/waste"
