"""`Connector.preview` shows the body `send` puts on the wire, built by the same code: for REST
the bytes the back office receives, for SOAP the envelope, for Open311 the form fields (the API
key named, never shown), for e-mail the message with its record attached.
"""

from __future__ import annotations

import email
import json
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qsl

from lxml import etree

from connectors.kit import FakeBackOffice, build, context
from connectors.rest import RestConnector
from hub.api.server_thread import ServerThread
from simulators.open311 import PREFIX, Open311State, create_app
from tests.unit.test_email_connector import connector as mailbox
from tests.unit.test_email_connector import context as mail_context
from tests.unit.test_open311_connector import RECORD as OPEN311_RECORD
from tests.unit.test_open311_connector import connector as open311
from tests.unit.test_open311_connector import context as open311_context
from tests.unit.test_soap_connector import CONTEXT as SOAP_CONTEXT
from tests.unit.test_soap_connector import build as soap_build
from tests.unit.test_soap_connector import config_dir, created, envelope, staged  # noqa: F401 - config_dir is a fixture

RECORD = {"case": {"uprn": "100023336957", "notes": "Bin left by the side gate — Llŷr"}, "count": 2}


def test_a_rest_preview_is_the_exact_body_the_back_office_receives() -> None:
    with FakeBackOffice(body=b'{"id": "CAS-1"}') as office:
        connector = build(RestConnector, {"url": office.url + "/cases", "reference_path": "id"})
        shown = connector.preview(RECORD, context(connector))
        connector.send(RECORD, context(connector))
    [received] = office.received
    assert shown.body.encode() == received.body
    assert shown.content_type == "application/json" and shown.target == f"POST {office.url}/cases"


def test_an_open311_preview_is_the_form_the_server_receives_with_the_key_named_not_shown() -> None:
    state = Open311State(api_key="street-key-7f3a")
    server = ServerThread(create_app(state)).start()
    try:
        connector = open311(server.url + PREFIX)
        shown = connector.preview(OPEN311_RECORD, open311_context())
        connector.send(OPEN311_RECORD, open311_context())
    finally:
        server.stop()
    assert "street-key-7f3a" not in shown.body and ("api_key", "[secret]") in parse_qsl(shown.body)
    [stored] = state.requests()
    fields = dict(parse_qsl(shown.body))
    fields.pop("api_key")
    assert {k: v for k, v in fields.items() if not k.startswith("attribute")} == {
        k: v for k, v in stored["fields"].items() if not k.startswith("attribute")}


def test_an_email_preview_is_the_message_with_the_record_attached() -> None:
    connector = mailbox()
    record = {"name": "Siân Ellis", "moving_date": "2026-12-01"}
    shown = connector.preview(record, mail_context())
    message: Message = email.message_from_string(shown.body)
    assert message["To"] == "counciltax@eastmoor.example.org" and "Siân Ellis" in str(email.header.make_header(email.header.decode_header(message["Subject"])))
    attached = next(p for p in message.walk() if p.get_filename() == "record.json")
    assert json.loads(attached.get_payload(decode=True)) == record  # type: ignore[arg-type]
    assert shown.content_type == "message/rfc822" and "to counciltax@eastmoor.example.org" in shown.target


def test_a_soap_preview_is_the_envelope_send_posts(config_dir: Path) -> None:  # noqa: F811 - the imported fixture
    connector = soap_build(config_dir, "revenues")
    record = {"dto": {"SourceSystem": "COUNCIL-HUB", "Agreement": {"Comment": "Tenant", "StartBalance": 612.4, "TenancyAgreementRef": "004417/02"},
                      "PaymentSchedule": {"ArrearsScheduledPaymentInfo": [{"Amount": 15.0, "ArrearsFrequencyCode": "W"}]}}}
    shown = connector.preview(record, SOAP_CONTEXT)
    fake = staged(connector, created())
    connector.send(record, SOAP_CONTEXT)
    [request] = fake.sent
    unindented = etree.XMLParser(remove_blank_text=True)
    body = etree.fromstring(shown.body.encode(), unindented)
    sent = etree.fromstring(request.content, unindented)
    # the same envelope's body (the preview is indented for people; WS-Security headers are added at send)
    soap_body = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
    assert etree.tostring(body.find(soap_body), method="c14n") == etree.tostring(sent.find(soap_body), method="c14n")
    assert "004417/02" in shown.body
    assert "uh-secret-7781" not in shown.body and shown.content_type.startswith("text/xml")
