"""The REST connector against the CRM simulator over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import DeliveryContext, Secrets
from connectors.registry import ConnectorRegistry
from connectors.rest import RestConnector
from hub.api.server_thread import ServerThread
from hub.config.files import ConnectorConfig
from hub.errors import ConfigError, PermanentError, TransientError
from simulators.crm import CrmState, FailurePlan, create_app

RECORD = {
    "client_unique_identifier": "EDC-0000000001/crm",
    "function": "case_to_crm_create_update_case",
    "data": [{"source_system": "Council Connector Hub", "source_ref": "EDC-0000000001"}],
}
CONTEXT = DeliveryContext("EDC-0000000001", "crm", 1, "EDC-0000000001/crm", 1, "eastmoor", "missed-bin-collection")


@pytest.fixture()
def crm() -> Iterator[tuple[CrmState, str]]:
    state = CrmState(basic=("hub", "pa55-word"))
    server = ServerThread(create_app(state)).start()
    yield state, server.url
    server.stop()


def build(url: str, env: dict[str, str] | None = None, **options: object) -> RestConnector:
    config = ConnectorConfig(
        name="crm",
        type="rest",
        options={
            "url": f"{url}/api/REST/case_to_crm/0.1",
            "auth": {"type": "basic", "username": "hub", "password_env": "CRM_PASSWORD"},
            "reference_path": "data[0].data[0].liberty_create_case_reference",
            "success_when": "result == 'success'",
            **options,
        },
    )
    connector = ConnectorRegistry.from_entry_points().build(config, Secrets(env if env is not None else {"CRM_PASSWORD": "pa55-word"}))
    assert isinstance(connector, RestConnector)
    return connector


def test_a_record_is_posted_with_basic_auth_and_the_case_reference_is_read_back(crm: tuple[CrmState, str]) -> None:
    state, url = crm
    outcome = build(url).send(RECORD, CONTEXT)
    assert outcome.external_reference == "CAS-000001"
    assert state.cases()[0]["record"] == RECORD


def test_sending_the_same_record_twice_makes_one_case(crm: tuple[CrmState, str]) -> None:
    state, url = crm
    connector = build(url)
    assert connector.send(RECORD, CONTEXT) == connector.send(RECORD, CONTEXT)
    assert state.stats() == {"cases": 1, "requests": 2, "duplicates": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_are_transient(crm: tuple[CrmState, str], status: int) -> None:
    state, url = crm
    state.arm(FailurePlan(count=1, mode="status", status=status))
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        build(url).send(RECORD, CONTEXT)


def test_a_timeout_is_transient_and_says_how_long_it_waited(crm: tuple[CrmState, str]) -> None:
    state, url = crm
    state.arm(FailurePlan(count=1, mode="timeout", seconds=2))
    with pytest.raises(TransientError, match="no reply from crm within 0.2 s"):
        build(url, timeout_seconds=0.2).send(RECORD, CONTEXT)


def test_nothing_listening_is_transient() -> None:
    with pytest.raises(TransientError, match="could not reach crm: ConnectError"):
        build("http://127.0.0.1:9").send(RECORD, CONTEXT)


def test_a_refused_record_is_permanent_and_carries_the_back_offices_reason(crm: tuple[CrmState, str]) -> None:
    _, url = crm
    with pytest.raises(PermanentError, match=r"HTTP 400: .*data\[0\]\.source_ref"):
        build(url).send({**RECORD, "data": [{"source_system": "x"}]}, CONTEXT)


def test_a_wrong_password_is_permanent_and_never_shown(crm: tuple[CrmState, str]) -> None:
    _, url = crm
    with pytest.raises(PermanentError) as caught:
        build(url, {"CRM_PASSWORD": "wrong-secret"}).send(RECORD, CONTEXT)
    assert "HTTP 401" in caught.value.reason and "wrong-secret" not in caught.value.reason


def test_check_reports_whether_the_back_office_is_reachable(crm: tuple[CrmState, str]) -> None:
    _, url = crm
    assert build(url, check_url=f"{url}/healthz").check().ok
    assert not build("http://127.0.0.1:9").check().ok


def test_options_are_validated_with_every_problem_named() -> None:
    config = ConnectorConfig(name="crm", type="rest", options={"url": "ftp://x", "method": "DELETE", "colour": "red"})
    with pytest.raises(ConfigError) as caught:
        ConnectorRegistry.from_entry_points().build(config, Secrets({}))
    message = str(caught.value)
    assert "connector 'crm' (rest) has invalid options" in message
    assert "url:" in message and "method:" in message and "colour: Extra inputs are not permitted" in message


def test_an_unknown_connector_type_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown connector type 'rset'; known types: amqp, email, open311, recording, rest, soap\. Did you mean 'rest'\?"):
        ConnectorRegistry.from_entry_points().build(ConnectorConfig(name="crm", type="rset"), Secrets({}))
