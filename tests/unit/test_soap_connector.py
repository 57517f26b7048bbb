"""The SOAP connector: offline, guarded WSDL loading (the real Civica contract), describe and
validate_record, and how every kind of reply or failure becomes an outcome, a retry or a park.

Replies come from a fake httpx transport, so no server runs and any reply can be staged.
"""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep.exceptions
from lxml import etree

from connectors.base import DeliveryContext, Secrets
from connectors.registry import ConnectorRegistry
from connectors.soap import SoapConnector, classify_fault
from hub.config.files import load_config
from hub.delivery.mapping_cases import mapping_cases
from hub.errors import ConfigError, PermanentError, TransientError
from tests.support.realworld import realworld

ROOT = Path(__file__).resolve().parents[2]
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
UH = "http://schemas.civica.co.uk/UHWeb/2013/03"
ENV = {"REVENUES_PASSWORD": "uh-secret-7781", "WASTE_PASSWORD": "bartec-secret-2290"}
CONTEXT = DeliveryContext("EDC-4KX7QM2P9T", "revenues", 7, "EDC-4KX7QM2P9T/revenues", 1, "eastmoor", "rent-arrears-payment-plan")
AGREEMENT = {
    "dto": {
        "SourceSystem": "COUNCIL-HUB",
        "Agreement": {"Comment": "Tenant: Chiamaka Okonkwo-Reid", "StartBalance": 612.4, "TenancyAgreementRef": "004417/02"},
        "PaymentSchedule": {"ArrearsScheduledPaymentInfo": [{"Amount": 15.0, "ArrearsFrequencyCode": "W"}]},
    }
}


class FakeBackOffice(httpx.BaseTransport):
    """Answers every request with one staged reply (status, body) or raises the staged error."""

    def __init__(self, reply: tuple[int, bytes] | Exception) -> None:
        self.reply = reply
        self.sent: list[httpx.Request] = []
        self.timeouts: list[Any] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        self.timeouts.append(request.extensions.get("timeout", {}).get("read"))
        if isinstance(self.reply, Exception):
            raise self.reply
        status, body = self.reply
        return httpx.Response(status, headers={"Content-Type": "text/xml; charset=utf-8"}, content=body, request=request)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only this connector's configuration files, so other teams' files cannot break these tests."""
    folder = tmp_path_factory.mktemp("config")
    for name in ("revenues.yaml", "waste.yaml"):
        shutil.copy(ROOT / "config" / name, folder / name)
    return folder


def build(config_dir: Path, name: str, env: dict[str, str] | None = None, **options: Any) -> SoapConnector:
    config = load_config(config_dir, {}).connectors[name]
    config = config.model_copy(update={"options": {**config.options, **options}})
    connector = ConnectorRegistry.from_entry_points().build(config, Secrets(ENV if env is None else env))
    assert isinstance(connector, SoapConnector)
    return connector


def staged(connector: SoapConnector, reply: tuple[int, bytes] | Exception) -> FakeBackOffice:
    fake = FakeBackOffice(reply)
    connector._transport.http = httpx.Client(transport=fake, headers=connector._transport.http.headers)
    return fake


def envelope(body: str) -> bytes:
    return f'<s:Envelope xmlns:s="{SOAP11}"><s:Body>{body}</s:Body></s:Envelope>'.encode()


def created(reference: str = "ARA0000042", success: str = "true", error: str = "") -> tuple[int, bytes]:
    agreement = f"<Agreement><Reference>{reference}</Reference><TenancyAgreementRef>004417/02</TenancyAgreementRef><PaymentSchedule/></Agreement>"
    result = f"<ErrorCode>0</ErrorCode><ErrorMessage>{error}</ErrorMessage><Success>{success}</Success>{agreement}"
    return 200, envelope(f'<CreateArrearsAgreementResponse xmlns="{UH}"><CreateArrearsAgreementResult>{result}</CreateArrearsAgreementResult></CreateArrearsAgreementResponse>')


def fault(code: str, text: str = "Object reference not set to an instance of an object.", extra_ns: str = "") -> tuple[int, bytes]:
    return 500, envelope(f"<s:Fault {extra_ns}><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>")


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records (and refuses) every outgoing connection attempt."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network use in a test that must stay offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_the_real_civica_wsdl_loads_offline_with_its_xsd_imports_mapped_to_local_files(config_dir: Path, no_network: list[Any]) -> None:
    connector = build(config_dir, "revenues")
    assert connector.address == "http://127.0.0.1:8103/webservices/ArrearsAgreementService.svc"
    assert no_network == []


def test_describe_lists_the_nine_civica_operations_with_their_argument_types(config_dir: Path) -> None:
    text = build(config_dir, "revenues").describe()
    operations = [
        "CreateArrearsAgreement", "AddPaymentSchedule", "CreateArrearsAction", "DeletePaymentSchedule", "UpdateArrearsAgreement",
        "UpdateTenancyAgreement", "GetArrearsAgreementByRef", "GetArrearsAgreementList", "GetArrearsActionHistory",
    ]
    assert "service ArrearsAgreementService, port BasicHttpBinding_IArrearsAgreementService" in text
    for name in operations:
        assert f"    {name}(dto: " in text
    assert "TenancyAgreementRef: string\n" in text and "StartBalance: decimal (optional)" in text


def test_a_wsdl_importing_an_unlisted_url_is_refused_by_name_without_a_network_call(tmp_path: Path, no_network: list[Any]) -> None:
    wsdl = tmp_path / "service.wsdl"
    civica = realworld("civica-universal-housing-wsdl")
    original = (civica / "ArrearsAgreementService.wsdl").read_text(encoding="utf-8")
    wsdl.write_text(original.replace("http://lbhuhwwebp01/civica-uh-gateway-dev/webservices/ArrearsAgreementService.svc?xsd=xsd1", "http://schemas.example.net/serialization.xsd"))
    with pytest.raises(ConfigError, match=r"imports http://schemas\.example\.net/serialization\.xsd, which is not listed in xsd_locations"):
        SoapConnector("revenues", SoapConnector.options_model.model_validate({
            "wsdl": str(wsdl), "operation": "CreateArrearsAgreement",
            "xsd_locations": {"?xsd=xsd0": str(civica / "ArrearsAgreementService1.xsd"), "?xsd=xsd2": str(civica / "ArrearsAgreementService.xsd")},
        }), Secrets({}))
    assert no_network == []


def test_a_wsdl_that_declares_a_dtd_is_refused_naming_the_file(tmp_path: Path) -> None:
    wsdl = tmp_path / "evil.wsdl"
    wsdl.write_text('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">&x;</wsdl:definitions>')
    with pytest.raises(ConfigError, match=r"evil\.wsdl: cannot load the WSDL: DTDForbidden"):
        SoapConnector("x", SoapConnector.options_model.model_validate({"wsdl": str(wsdl), "operation": "Any"}), Secrets({}))


def test_a_missing_wsdl_and_an_unknown_operation_are_configuration_errors(config_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.wsdl: WSDL file not found"):
        build(config_dir, "revenues", wsdl=str(tmp_path / "nowhere.wsdl"))
    with pytest.raises(ConfigError, match=r"operation 'CreateArrearsAgreements' is not in .*GetArrearsAgreementByRef"):
        build(config_dir, "revenues", operation="CreateArrearsAgreements")


def test_the_agreement_reference_is_read_from_the_reply_of_a_signed_timed_call(config_dir: Path) -> None:
    connector = build(config_dir, "revenues")
    fake = staged(connector, created("ARA0000042"))
    assert connector.send(AGREEMENT, CONTEXT).external_reference == "ARA0000042"
    [request] = fake.sent
    assert request.headers["SOAPAction"] == f'"{UH}/IArrearsAgreementService/CreateArrearsAgreement"'
    body = etree.fromstring(request.content)
    wsse = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}"
    assert body.findtext(f".//{wsse}UsernameToken/{wsse}Username") == "hub"
    assert body.findtext(f".//{{{UH}}}TenancyAgreementRef") == "004417/02"
    assert fake.timeouts == [30.0]  # explicit, from timeout_seconds: zeep's own default is none


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        (fault("s:Server"), TransientError, r"server fault \(s:Server\): Object reference"),
        (fault("soap:Server.Database", "Timeout expired"), TransientError, "server fault"),
        (fault("a:InternalServiceFault", "The server was unable to process the request", 'xmlns:a="urn:wcf"'), TransientError, "server fault"),
        (fault("s:Client", "Tenancy 004417/02 is closed"), PermanentError, r"refused the record with a fault \(s:Client\): Tenancy 004417/02 is closed"),
        (fault("a:InvalidSecurity", "An error occurred when verifying security", 'xmlns:a="urn:wsse"'), PermanentError, "InvalidSecurity"),
        ((503, b"<html>Service Unavailable</html>"), TransientError, "answered HTTP 503"),
        ((502, b""), TransientError, "answered HTTP 502"),
        ((429, b""), TransientError, "answered HTTP 429"),
        ((500, b"<html>Runtime Error</html>"), TransientError, "HTTP 500 without a SOAP reply"),
        ((404, b"<html>Not Found</html>"), PermanentError, "refused the request: HTTP 404"),
        ((401, b""), PermanentError, "HTTP 401"),
        (httpx.ConnectTimeout("timed out"), TransientError, "no reply from revenues within 30 s"),
        (httpx.ReadTimeout("timed out"), TransientError, "no reply from revenues within 30 s"),
        (httpx.ConnectError("refused"), TransientError, "could not reach revenues: ConnectError"),
    ],
    ids=["server", "server-subcode", "wcf-internal", "client", "wcf-security", "503", "502", "429", "500-html", "404", "401",
         "connect-timeout", "read-timeout", "refused"],
)
def test_faults_and_failures_are_retried_or_parked_by_their_kind(
    config_dir: Path, reply: tuple[int, bytes] | Exception, error: type[Exception], reason: str
) -> None:
    connector = build(config_dir, "revenues")
    staged(connector, reply)
    with pytest.raises(error, match=reason):
        connector.send(AGREEMENT, CONTEXT)


@pytest.mark.parametrize(("code", "error"), [("env:Receiver", TransientError), ("env:Sender", PermanentError), ("env:MustUnderstand", PermanentError)])
def test_soap_1_2_receiver_faults_retry_and_sender_faults_park(code: str, error: type[Exception]) -> None:
    assert isinstance(classify_fault("planning", zeep.exceptions.Fault("No", code=code), 500), error)


def test_a_reply_declaring_an_external_entity_is_refused_and_nothing_of_it_is_shown(config_dir: Path) -> None:
    connector = build(config_dir, "revenues")
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY leak SYSTEM "file:///etc/passwd">]>' + created("&leak;")[1]
    staged(connector, (200, xxe))
    with pytest.raises(PermanentError, match="DTD or entities, which is refused as unsafe") as raised:
        connector.send(AGREEMENT, CONTEXT)
    assert "root:" not in raised.value.reason


def test_a_reply_that_reports_failure_parks_with_the_back_offices_own_message(config_dir: Path) -> None:
    connector = build(config_dir, "revenues")
    staged(connector, created("", success="false", error="Tenancy agreement 004417/02 does not exist"))
    with pytest.raises(PermanentError, match="revenues refused the record: Tenancy agreement 004417/02 does not exist"):
        connector.send(AGREEMENT, CONTEXT)


def test_a_record_that_does_not_fit_the_operation_parks_without_being_sent(config_dir: Path) -> None:
    connector = build(config_dir, "revenues")
    fake = staged(connector, created())
    with pytest.raises(PermanentError, match="does not fit CreateArrearsAgreement: .*unexpected keyword argument 'Tenancy'"):
        connector.send({"dto": {**AGREEMENT["dto"], "Tenancy": "004417/02"}}, CONTEXT)
    assert fake.sent == []


def test_validate_record_names_an_unknown_field_and_a_value_of_the_wrong_type(config_dir: Path) -> None:
    connector = build(config_dir, "revenues")
    record = {"dto": {**AGREEMENT["dto"], "Agreement": {"TenancyAgreementRef": "004417/02", "NoPrePay": "none", "Arrears": 1}}}
    assert connector.validate_record(record) == [
        "CreateArrearsAgreement: dto.Agreement.NoPrePay: 'none' is not a valid int",
        "CreateArrearsAgreement: dto.Agreement.Arrears: no such field in ArrearsAgreementInfo (known: UserFieldList, "
        "ArrearsAgreementStatusCode, Comment, FcaDate, FirstCheck, FirstCheckFrequencyTypeCode, IsBreached, MonitorBalanceCode, "
        "NextCheck, NextCheckFrequencyTypeCode, NoPrePay, Reference, StartBalance, StartDate, TenancyAgreementRef, Tolerance)",
    ]
    assert connector.validate_record({"dtos": {}}) == ["CreateArrearsAgreement: dtos: no such field in CreateArrearsAgreement (known: dto)"]
    assert connector.validate_record(AGREEMENT) == []


@pytest.mark.parametrize("name", ["revenues", "waste"])
def test_every_mapping_case_is_a_valid_record_for_its_soap_operation(config_dir: Path, name: str) -> None:
    connector = build(config_dir, name)
    cases = [case for case in mapping_cases(ROOT / "mappings", ROOT / "schemas") if case.key[1] == name]
    assert len(cases) >= 2
    for case in cases:
        assert connector.validate_record(case.expected) == [], case.path


def test_the_idempotency_key_is_sent_in_the_configured_field_with_basic_auth(config_dir: Path) -> None:
    connector = build(config_dir, "waste")
    reply = '<ServiceRequest_CreateResponse xmlns="http://bartec-systems.com/"><ServiceRequest_CreateResult RecordCount="1" xmlns="http://www.bartec-systems.com/ServiceRequests_Types_Get.xsd"><ServiceRequest_Create/><ServiceCode>SR00051627</ServiceCode></ServiceRequest_CreateResult></ServiceRequest_CreateResponse>'
    fake = staged(connector, (200, envelope(reply)))
    record = {"UPRN": "100090215423", "ServiceTypeID": 7, "DateRequested": "2026-11-23T10:05:33"}
    context = DeliveryContext("EDC-9RT2KX7M4P", "waste", 3, "EDC-9RT2KX7M4P/waste", 1, "eastmoor", "bulky-waste-collection")
    assert connector.send(record, context).external_reference == "SR00051627"
    [request] = fake.sent
    assert etree.fromstring(request.content).findtext(".//{http://bartec-systems.com/}ExternalReference") == "EDC-9RT2KX7M4P/waste"
    assert request.headers["Authorization"].startswith("Basic ")
    assert "ExternalReference" not in record  # the mapped record itself is left as it was


def test_a_bartec_error_in_a_normal_reply_parks_with_its_message(config_dir: Path) -> None:
    connector = build(config_dir, "waste")
    reply = "<ServiceRequest_CreateResponse xmlns=\"http://bartec-systems.com/\"><ServiceRequest_CreateResult RecordCount=\"0\" xmlns=\"http://www.bartec-systems.com/ServiceRequests_Types_Get.xsd\"><Errors><Result xmlns=\"http://www.bartec-systems.com\">1</Result><Message xmlns=\"http://www.bartec-systems.com\">Error in 'API.pr_ServiceRequest_Create': Specified UPRN does not exist</Message></Errors></ServiceRequest_CreateResult></ServiceRequest_CreateResponse>"
    staged(connector, (200, envelope(reply)))
    with pytest.raises(PermanentError, match="waste refused the record: .*Specified UPRN does not exist"):
        connector.send({"UPRN": "100000000000", "ServiceTypeID": 7, "DateRequested": "2026-11-23T10:05:33"}, CONTEXT)


def test_soap_bodies_never_reach_the_logs(config_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    connector = build(config_dir, "revenues")
    staged(connector, created("ARA0000042"))
    with caplog.at_level(logging.DEBUG):
        connector.send(AGREEMENT, CONTEXT)
    assert "Okonkwo-Reid" not in caplog.text and "ARA0000042" not in caplog.text


def test_credentials_are_needed_only_to_send_so_configuration_checks_run_without_them(config_dir: Path) -> None:
    connector = build(config_dir, "revenues", env={})
    assert connector.validate_record(AGREEMENT) == []
    with pytest.raises(ConfigError, match="REVENUES_PASSWORD is not set"):
        connector.send(AGREEMENT, CONTEXT)


def test_check_reports_a_back_office_that_does_not_answer_without_raising(config_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    health = build(config_dir, "revenues", endpoint=f"http://127.0.0.1:{port}/uh.svc").check()
    assert not health.ok and f"cannot reach http://127.0.0.1:{port}/uh.svc?wsdl" in health.detail
    assert build(config_dir, "revenues", env={}).check() == build(config_dir, "revenues", env={}).check()
    assert "REVENUES_PASSWORD" in build(config_dir, "revenues", env={}).check().detail
