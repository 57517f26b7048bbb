"""The revenues simulator serves Civica's real ArrearsAgreementService contract pointing at itself,
answers like WCF, keeps one agreement per idempotency key, and fails on command."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from zeep.wsse.username import UsernameToken

from connectors.soap_loader import load_client
from simulators.revenues import CONTRACT, SOAP11, SVC_PATH, RevenuesState, create_app, xsd_files

UH = "http://schemas.civica.co.uk/UHWeb/2013/03"
ACTION = f"{UH}/IArrearsAgreementService/"
CLIENT, _ = load_client(str(CONTRACT / "ArrearsAgreementService.wsdl"), {f"?xsd={k}": v for k, v in xsd_files(CONTRACT).items()}, 5, 5)


def agreement(key: str | None = "EDC-4KX7QM2P9T/revenues", tenancy: str = "004417/02") -> dict[str, Any]:
    fields = {"UserField": [{"Key": "ExternalRef", "Value": key}]} if key else None
    return {
        "SourceSystem": "COUNCIL-HUB",
        "Agreement": {"UserFieldList": fields, "StartBalance": "612.40", "TenancyAgreementRef": tenancy},
        "PaymentSchedule": {"ArrearsScheduledPaymentInfo": [{"Amount": "15.00", "ArrearsFrequencyCode": "W", "StartDate": "2026-12-07T00:00:00"}]},
    }


def call(client: TestClient, operation: str, dto: dict[str, Any], user: tuple[str, str] | None = ("hub", "pw")) -> tuple[int, Any]:
    CLIENT.wsse = UsernameToken(*user) if user else None
    message = CLIENT.create_message(CLIENT.service, operation, dto=dto)
    response = client.post(SVC_PATH, content=etree.tostring(message), headers={"SOAPAction": f'"{ACTION}{operation}"', "Content-Type": "text/xml"})
    return response.status_code, etree.fromstring(response.content)


def result(reply: Any, operation: str) -> dict[str, str]:
    node = reply.find(f"{{{SOAP11}}}Body/{{{UH}}}{operation}Response/{{{UH}}}{operation}Result")
    return {etree.QName(child).localname: child.findtext(f"{{{UH}}}Reference") if etree.QName(child).localname == "Agreement" else child.text for child in node}


def fault_of(reply: Any) -> tuple[str, str]:
    fault = reply.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    return fault.findtext("faultcode"), fault.findtext("faultstring")


@pytest.fixture()
def state() -> RevenuesState:
    return RevenuesState("hub", "pw")


@pytest.fixture()
def client(state: RevenuesState) -> TestClient:
    return TestClient(create_app(state), base_url="http://uh.eastmoor.test")


def test_the_wsdl_and_its_schemas_are_served_pointing_at_the_simulator(client: TestClient) -> None:
    wsdl = client.get(f"{SVC_PATH}?wsdl").text
    assert "lbhuhwwebp01" not in wsdl
    assert f'location="http://uh.eastmoor.test{SVC_PATH}"' in wsdl
    assert f'schemaLocation="http://uh.eastmoor.test{SVC_PATH}?xsd=xsd0"' in wsdl
    assert 'name="CreateArrearsAgreement"' in client.get(f"{SVC_PATH}?xsd=xsd0").text
    assert "ArrayOfint" in client.get(f"{SVC_PATH}?xsd=xsd2").text


def test_an_agreement_is_created_and_read_back_by_its_reference(client: TestClient) -> None:
    status, reply = call(client, "CreateArrearsAgreement", agreement())
    assert status == 200
    assert result(reply, "CreateArrearsAgreement") == {"ErrorCode": "0", "Success": "true", "Agreement": "ARA0000001"}
    status, reply = call(client, "GetArrearsAgreementByRef", {"SourceSystem": "COUNCIL-HUB", "Reference": "ARA0000001"})
    assert result(reply, "GetArrearsAgreementByRef")["Agreement"] == "ARA0000001"
    amount = reply.find(f".//{{{UH}}}ArrearsScheduledPaymentDto/{{{UH}}}Amount")
    assert amount is not None and amount.text == "15.00"


def test_a_resent_agreement_with_the_same_idempotency_key_is_not_made_twice(client: TestClient, state: RevenuesState) -> None:
    first = result(call(client, "CreateArrearsAgreement", agreement())[1], "CreateArrearsAgreement")
    again = result(call(client, "CreateArrearsAgreement", agreement())[1], "CreateArrearsAgreement")
    other = result(call(client, "CreateArrearsAgreement", agreement("EDC-7HV3RZ8N2D/revenues"))[1], "CreateArrearsAgreement")
    assert first == again and other["Agreement"] == "ARA0000002"
    assert state.summary() == {"agreements": 2, "requests": 3, "duplicates": 1}


def test_refusals_come_back_as_unsuccessful_replies_with_a_message(client: TestClient) -> None:
    reply = result(call(client, "CreateArrearsAgreement", agreement(tenancy=" "))[1], "CreateArrearsAgreement")
    assert reply == {"ErrorCode": "1001", "ErrorMessage": "Tenancy agreement reference is required", "Success": "false", "Agreement": None}
    missing = result(call(client, "GetArrearsAgreementByRef", {"SourceSystem": "X", "Reference": "ARA9999999"})[1], "GetArrearsAgreementByRef")
    assert missing["Success"] == "false" and missing["ErrorMessage"] == "No arrears agreement has that reference"


def test_wrong_credentials_get_wcfs_invalid_security_fault(client: TestClient) -> None:
    status, reply = call(client, "CreateArrearsAgreement", agreement(), user=("hub", "guess"))
    assert status == 500 and fault_of(reply) == ("a:InvalidSecurity", "An error occurred when verifying security for the message.")
    assert call(client, "CreateArrearsAgreement", agreement(), user=None)[0] == 500


def test_an_operation_the_simulator_does_not_offer_gets_an_action_not_supported_fault(client: TestClient) -> None:
    status, reply = call(client, "GetArrearsAgreementList", {"SourceSystem": "X"})
    code, text = fault_of(reply)
    assert status == 500 and code == "a:ActionNotSupported" and "GetArrearsAgreementList" in text


def test_a_request_with_a_dtd_or_a_body_off_contract_is_a_client_fault(client: TestClient) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>'
    reply = etree.fromstring(client.post(SVC_PATH, content=xxe, headers={"SOAPAction": f'"{ACTION}CreateArrearsAgreement"'}).content)
    assert fault_of(reply)[0] == "s:Client" and "DTD" in fault_of(reply)[1]
    CLIENT.wsse = UsernameToken("hub", "pw")
    message = etree.tostring(CLIENT.create_message(CLIENT.service, "CreateArrearsAgreement", dto=agreement()))
    off_contract = message.replace(b"TenancyAgreementRef>", b"TenancyRef>")
    reply = etree.fromstring(client.post(SVC_PATH, content=off_contract, headers={"SOAPAction": f'"{ACTION}CreateArrearsAgreement"'}).content)
    assert fault_of(reply)[0] == "s:Client" and "does not match the contract" in fault_of(reply)[1]


@pytest.mark.parametrize(("mode", "status", "code"), [("server_fault", 500, "s:Server"), ("client_fault", 500, "s:Client"), ("status", 503, None)])
def test_fails_on_command_for_the_planned_number_of_requests(client: TestClient, state: RevenuesState, mode: str, status: int, code: str | None) -> None:
    client.post("/_control/fail", json={"mode": mode, "count": 1})
    response_status, reply = (lambda r: (r.status_code, r))(client.post(SVC_PATH, content=b"<x/>"))
    assert response_status == status
    if code is not None:
        assert fault_of(etree.fromstring(reply.content))[0] == code
    assert call(client, "CreateArrearsAgreement", agreement())[0] == 200
    assert state.summary()["agreements"] == 1
