"""Connectors call only what their councils allow: a connector pointed at a metadata address or
an unlisted host is refused before the hub starts, a name that comes to resolve to one parks
the delivery without sending, and a redirect is never followed. Back offices run on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import http
from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Secrets
from connectors.registry import ConnectorRegistry
from hub.api.server_thread import ServerThread
from hub.config.files import ConnectorConfig
from hub.config.settings import Settings
from hub.errors import ConfigError, OutboundRefused, PermanentError
from hub.outbound.guard import AllowList
from hub.runtime import Runtime
from simulators.crm import CrmState
from simulators.crm import create_app as create_crm
from tests.support.embedded import embedded_hub

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ConnectorRegistry.from_entry_points()
CONTEXT = DeliveryContext("EDC-0000000001", "crm", 1, "EDC-0000000001/crm", 1, "eastmoor", "missed-bin-collection")
EASTMOOR = AllowList(("127.0.0.1", "crm.council.example"), owner="tenant eastmoor")


class Counter:
    """A loopback server that counts what reaches it and answers as told (by default 200 {})."""

    def __init__(self, status: int = 200, location: str | None = None, body: bytes = b"{}") -> None:
        self.hits: list[str] = []
        self.status, self.location, self.body = status, location, body

        async def anything(request: Request) -> Response:
            self.hits.append(f"{request.method} {request.url.path}")
            headers = {"Location": self.location} if self.location else {}
            return Response(self.body, status_code=self.status, headers=headers, media_type="application/json")

        methods = ["GET", "POST", "PUT", "OPTIONS"]
        app = Starlette(routes=[Route("/", anything, methods=methods), Route("/{path:path}", anything, methods=methods)])
        self.server = ServerThread(app).start()
        self.url = self.server.url


@pytest.fixture()
def counters() -> Iterator[list[Counter]]:
    made: list[Counter] = []
    yield made
    for counter in made:
        counter.server.stop()


def counter(counters: list[Counter], **kwargs: Any) -> Counter:
    made = Counter(**kwargs)
    counters.append(made)
    return made


@pytest.fixture()
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every TCP connection opened with socket.create_connection (as httpcore and smtplib do)."""
    opened: list[tuple[Any, ...]] = []
    real_create = socket.create_connection

    def create(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(tuple(address))
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create)
    return opened


def resolving(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """DNS as a test wants it for the names in `answers`; every other name as usual."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))) for address in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def council_config(tmp_path: Path, allowed: str) -> Path:
    """The shipped configuration, with both councils allowing `allowed` (a YAML list)."""
    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    tenants = (config / "tenants.yaml").read_text()
    lines = [f"    allowed_hosts: {allowed}" if line.strip().startswith("allowed_hosts:") else line for line in tenants.splitlines()]
    (config / "tenants.yaml").write_text("\n".join(lines) + "\n")
    return config


def rest(url: str, outbound: AllowList | None = None) -> Any:
    config = ConnectorConfig(name="crm", type="rest", options={"url": url, "timeout_seconds": 5})
    return REGISTRY.build(config, Secrets({}), outbound)


def sample(form: str, name: str) -> Any:
    return json.loads((ROOT / "schemas" / form / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# -- at configuration time --------------------------------------------------------------------


def test_connectors_at_metadata_and_link_local_addresses_are_refused_by_config_check_and_the_hub_does_not_start(tmp_path: Path) -> None:
    env = {"CRM_URL": "http://169.254.169.254", "WASTE_URL": "http://[fe80::1]:8104", "PLANNING_URL": "http://metadata.google.internal"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    result = subprocess.run([sys.executable, "-m", "hub", "config", "check"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)
    config = Settings().config_dir
    never = "is a link-local or cloud metadata address, which the hub never calls"
    expected = [
        f"{config / 'connectors.yaml'}:{line_of(config / 'connectors.yaml', 'name: crm')}: connector crm: host 169.254.169.254 {never}",
        f"{config / 'waste.yaml'}:{line_of(config / 'waste.yaml', 'name: waste')}: connector waste: host fe80::1 {never}",
        f"{config / 'planning.yaml'}:{line_of(config / 'planning.yaml', 'name: planning-comments')}: connector planning-comments: host metadata.google.internal {never}",
    ]
    assert result.returncode == 1
    for line in expected:
        assert line in result.stderr.splitlines()
    assert "4 problem(s) found" in result.stderr  # crm, waste, planning, planning-comments
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(database_url="sqlite://"), env)
    assert all(line in str(refused.value).splitlines() for line in expected)


def test_a_connector_on_a_host_one_of_its_tenants_does_not_allow_is_refused_naming_that_tenant(tmp_path: Path) -> None:
    config = council_config(tmp_path, '["127.0.0.1", "localhost"]')
    tenants = (config / "tenants.yaml").read_text().replace('allowed_hosts: ["127.0.0.1", "localhost"]', 'allowed_hosts: ["*"]', 1)
    (config / "tenants.yaml").write_text(tenants)  # eastmoor allows any host, westvale only this machine
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(database_url="sqlite://", config_dir=config), {"CRM_URL": "https://evil.example"})
    line = line_of(config / "connectors.yaml", "name: crm")
    assert str(refused.value) == f"{config / 'connectors.yaml'}:{line}: connector crm: host evil.example is not on tenant westvale's allowed_hosts"


def test_an_allowed_hosts_entry_that_is_a_url_is_reported_with_its_tenant(tmp_path: Path) -> None:
    config = council_config(tmp_path, '["127.0.0.1", "localhost", "https://crm.westvale.gov.uk/"]')
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(database_url="sqlite://", config_dir=config), {})
    line = line_of(config / "tenants.yaml", "id: westvale")
    assert (
        f"{config / 'tenants.yaml'}:{line}: tenant westvale: allowed_hosts entry 'https://crm.westvale.gov.uk/' "
        "is not a host, host:port, *.domain, [IPv6] or network"
    ) in str(refused.value).splitlines()


# -- at request time ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8080/", "http://metadata.google.internal/"])
def test_a_metadata_address_is_never_called_even_by_a_connector_built_without_tenants(url: str, connections: list[tuple[Any, ...]]) -> None:
    connector = rest(url)
    with pytest.raises(OutboundRefused, match="crm was not called: host .* is a link-local or cloud metadata address"):
        connector.send({"a": 1}, CONTEXT)
    assert not connector.check().ok
    assert connections == []


def test_a_host_off_the_list_is_refused_at_request_time_and_nothing_reaches_it(counters: list[Counter]) -> None:
    office = counter(counters)
    connector = rest(office.url.replace("127.0.0.1", "localhost"), EASTMOOR)
    with pytest.raises(OutboundRefused, match="crm was not called: host localhost is not on tenant eastmoor's allowed_hosts"):
        connector.send({"a": 1}, CONTEXT)
    assert office.hits == []
    rest(office.url, EASTMOOR).send({"a": 1}, CONTEXT)  # the same server by an allowed name
    assert office.hits == ["POST /"]


def test_a_name_that_comes_to_resolve_to_a_metadata_address_parks_the_delivery_and_nothing_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = CrmState(token="crm-token")
    server = ServerThread(create_crm(crm)).start()
    config = council_config(tmp_path, '["127.0.0.1", "localhost", "crm.council.example"]')
    env = {"CRM_URL": f"http://crm.council.example:{server.port}", "CRM_API_TOKEN": "crm-token"}
    # the name passed the start-up check; now its DNS answer includes the metadata address
    resolving(monkeypatch, {"crm.council.example": ["169.254.169.254", "127.0.0.1"]})
    try:
        with embedded_hub(tmp_path, config_dir=config, env=env) as hub:
            first = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
            [parked] = hub.wait_until_settled(first)["deliveries"]
            cases_while_refused = len(crm.cases())
            resolving(monkeypatch, {"crm.council.example": ["127.0.0.1"]})
            second = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
            [delivered] = hub.wait_until_settled(second)["deliveries"]
    finally:
        server.stop()
    assert (parked["connector"], parked["state"], parked["attempts"]) == ("crm", "parked", 1)
    assert parked["last_error"] == (
        "crm was not called: host crm.council.example resolves to 169.254.169.254, "
        "a link-local or metadata address, which the hub never calls"
    )
    assert cases_while_refused == 0
    assert delivered["state"] == "delivered" and len(crm.cases()) == 1  # by name, on the checked address


def test_a_redirect_is_never_followed_and_parks_the_delivery_naming_where_it_pointed(tmp_path: Path, counters: list[Counter]) -> None:
    elsewhere = counter(counters)
    office = counter(counters, status=302, location=f"{elsewhere.url}/latest/meta-data/iam")
    with embedded_hub(tmp_path, env={"CRM_URL": office.url}) as hub:
        first = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
        [to_loopback] = hub.wait_until_settled(first)["deliveries"]
        office.location = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        second = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
        [to_metadata] = hub.wait_until_settled(second)["deliveries"]
    assert (to_loopback["state"], to_loopback["attempts"]) == ("parked", 1)
    assert to_loopback["last_error"] == "the back office answered with a redirect to 127.0.0.1, which the hub does not follow"
    assert to_metadata["last_error"] == "the back office answered with a redirect to 169.254.169.254, which the hub does not follow"
    assert len(office.hits) == 2 and elsewhere.hits == []


# -- SOAP: the WSDL and the endpoint ------------------------------------------------------------


def bulky_record() -> Any:
    case = json.loads((ROOT / "mappings" / "bulky-waste-collection.waste.cases" / "single-mattress.json").read_text(encoding="utf-8"))
    return case["expected"]


def waste(wsdl: str, outbound: AllowList, endpoint: str = "http://127.0.0.1:9/API-R1531/CollectiveAPI.asmx") -> Any:
    config = ConnectorConfig(name="waste", type="soap", options={"wsdl": wsdl, "operation": "ServiceRequest_Create", "endpoint": endpoint})
    return REGISTRY.build(config, Secrets({}), outbound)


def test_a_wsdl_loads_from_a_file_or_an_allowed_host_and_never_from_another(counters: list[Counter]) -> None:
    wsdl_file = ROOT / "simulators" / "wsdl" / "bartec-collective.wsdl"
    office = counter(counters, body=wsdl_file.read_bytes())
    only_loopback = AllowList(("127.0.0.1",), owner="tenant eastmoor")
    assert waste(str(wsdl_file), only_loopback).describe().startswith("waste: SOAP ServiceRequest_Create")
    waste(f"{office.url}/CollectiveAPI.asmx?wsdl", only_loopback)
    assert office.hits == ["GET /CollectiveAPI.asmx"]
    with pytest.raises(ConfigError) as refused:
        waste(f"{office.url.replace('127.0.0.1', 'localhost')}/CollectiveAPI.asmx?wsdl", only_loopback)
    assert "host localhost is not on tenant eastmoor's allowed_hosts; a WSDL loads only from a file or an allowed host" in str(refused.value)
    assert office.hits == ["GET /CollectiveAPI.asmx"]


def test_config_check_refuses_a_wsdl_url_on_a_host_the_tenants_do_not_allow(tmp_path: Path) -> None:
    config = council_config(tmp_path, '["127.0.0.1", "localhost"]')
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(database_url="sqlite://", config_dir=config), {"WASTE_WSDL": "https://wsdl.bartec.example/CollectiveAPI.asmx?wsdl"})
    line = line_of(config / "waste.yaml", "name: waste")
    assert f"{config / 'waste.yaml'}:{line}: connector waste: host wsdl.bartec.example (from wsdl) is not on tenant eastmoor's allowed_hosts" in str(refused.value)


def test_a_soap_endpoint_whose_name_resolves_to_a_metadata_address_is_not_called(monkeypatch: pytest.MonkeyPatch, counters: list[Counter]) -> None:
    office = counter(counters)
    connector = waste(str(ROOT / "simulators" / "wsdl" / "bartec-collective.wsdl"), EASTMOOR, endpoint=f"http://crm.council.example:{office.server.port}/x")
    resolving(monkeypatch, {"crm.council.example": ["169.254.169.254"]})
    with pytest.raises(OutboundRefused, match="host crm.council.example resolves to 169.254.169.254"):
        connector.send(bulky_record(), CONTEXT)
    assert office.hits == []


def test_a_soap_endpoint_whose_dns_answer_changes_after_the_check_is_called_only_at_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, counters: list[Counter], connections: list[tuple[Any, ...]]
) -> None:
    # DNS rebinding: the first answer is safe, every later one is the metadata address. The call
    # must connect where the name resolved when it was checked, not ask again and go there.
    office = counter(counters, body=b"<x/>")
    connector = waste(str(ROOT / "simulators" / "wsdl" / "bartec-collective.wsdl"), EASTMOOR, endpoint=f"http://crm.council.example:{office.server.port}/x")
    answers = iter([["127.0.0.1"]])
    real = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "crm.council.example":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0))) for address in next(answers, ["169.254.169.254"])]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(PermanentError):  # the counter's `<x/>` is no SOAP reply: what matters is where it went
        connector.send(bulky_record(), CONTEXT)
    assert office.hits == ["POST /x"]
    assert [address for address in connections if address[0] == "169.254.169.254"] == []


def test_a_soap_back_office_answering_with_a_redirect_parks_and_the_target_is_not_called(counters: list[Counter]) -> None:
    elsewhere = counter(counters)
    office = counter(counters, status=302, location=f"{elsewhere.url}/steal")
    connector = waste(str(ROOT / "simulators" / "wsdl" / "bartec-collective.wsdl"), EASTMOOR, endpoint=f"{office.url}/API/CollectiveAPI.asmx")
    with pytest.raises(PermanentError) as parked:
        connector.send(bulky_record(), CONTEXT)
    assert parked.value.reason == "the back office answered with a redirect to 127.0.0.1, which the hub does not follow"
    assert office.hits == ["POST /API/CollectiveAPI.asmx"] and elsewhere.hits == []


# -- the mail server and the broker ---------------------------------------------------------------


def email(host: str, port: int, outbound: AllowList | None = None) -> Any:
    options = {"host": host, "port": port, "from_address": "hub@eastmoor.example.org", "to": ["team@eastmoor.example.org"],
               "subject": "x", "body_template": "y", "timeout_seconds": 2}
    return REGISTRY.build(ConnectorConfig(name="feedback-email", type="email", options=options), Secrets({}), outbound)


def test_a_mail_server_off_the_list_or_at_a_metadata_address_is_not_connected_to(connections: list[tuple[Any, ...]]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        with pytest.raises(OutboundRefused, match="feedback-email was not called: host localhost is not on tenant eastmoor's allowed_hosts"):
            email("localhost", port, EASTMOOR).send({}, CONTEXT)
        with pytest.raises(OutboundRefused, match="host 169.254.169.254 is a link-local or cloud metadata address"):
            email("169.254.169.254", 25).send({}, CONTEXT)
        health = email("localhost", port, EASTMOOR).check()
        assert accepted(listening) == 0
    assert not health.ok and health.detail == "feedback-email was not called: host localhost is not on tenant eastmoor's allowed_hosts"
    assert connections == []


def amqp(url: str) -> Any:
    config = ConnectorConfig(name="benefits-amqp", type="amqp", options={"url_env": "RB_AMQP_URL", "exchange": "revenues-benefits"})
    return REGISTRY.build(config, Secrets({"RB_AMQP_URL": url}), EASTMOOR)


def accepted(listening: socket.socket) -> int:
    listening.setblocking(False)
    count = 0
    while True:
        try:
            listening.accept()[0].close()
        except BlockingIOError:
            return count
        count += 1


def test_a_broker_off_the_list_or_at_a_metadata_address_is_not_connected_to_and_its_url_is_not_shown() -> None:
    with pytest.raises(OutboundRefused) as refused:
        amqp("amqp://hub:s3cret-pw@169.254.169.254:5672//").send({}, CONTEXT)
    assert refused.value.reason == (
        "benefits-amqp was not called: the broker's host 169.254.169.254 is a link-local or cloud metadata address, which the hub never calls"
    )
    with socket.create_server(("127.0.0.1", 0)) as listening:
        url = f"amqp://hub:s3cret-pw@localhost:{listening.getsockname()[1]}//"
        with pytest.raises(OutboundRefused, match="the broker's host localhost is not on tenant eastmoor's allowed_hosts"):
            amqp(url).send({}, CONTEXT)
        health = amqp(url).check()
        assert accepted(listening) == 0
    assert not health.ok and "s3cret-pw" not in health.detail and "localhost is not on" in health.detail


# -- connectors the hub did not write ---------------------------------------------------------------


class TicketingOptions(ConnectorOptions):
    url: str


class CouncilTicketing(Connector):
    """A council's own connector from its own package: it uses the hub's HTTP client as a plug-in would."""

    options_model = TicketingOptions
    options: TicketingOptions

    def __init__(self, name: str, options: TicketingOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self.client = http.client(5, 5)  # no allow-list passed: made while the registry builds it

    def send(self, record: Any, context: DeliveryContext) -> Outcome:
        http.call(self.name, 5, lambda: self.client.post(self.options.url, json=record), lambda r: f"HTTP {r.status_code}")
        return Outcome()

    def check(self) -> Health:
        return Health(True, "")


def test_a_plug_in_and_the_open311_connector_get_their_tenants_list_without_asking_for_it(counters: list[Counter]) -> None:
    office = counter(counters)
    registry = ConnectorRegistry.from_entry_points()
    registry.register("council-ticketing", CouncilTicketing)
    elsewhere = office.url.replace("127.0.0.1", "localhost")
    plug_in = registry.build(ConnectorConfig(name="tickets", type="council-ticketing", options={"url": elsewhere}), Secrets({}), EASTMOOR)
    open311 = registry.build(
        ConnectorConfig(name="street-cleansing", type="open311", options={"endpoint": elsewhere, "api_key_env": "KEY", "service_code": "FLYTIP"}),
        Secrets({"KEY": "k"}),
        EASTMOOR,
    )
    assert plug_in.outbound is EASTMOOR and open311.outbound is EASTMOOR
    for connector in (plug_in, open311):
        with pytest.raises(OutboundRefused, match=f"{connector.name} was not called: host localhost is not on tenant eastmoor's allowed_hosts"):
            connector.send({"address_string": "1 High Street"}, CONTEXT)
    assert office.hits == []
