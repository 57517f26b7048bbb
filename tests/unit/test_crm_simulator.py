"""The CRM simulator answers like Liberty Create, dedupes, and fails on command."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from simulators.crm import CASE_PATH, CrmState, create_app

pytestmark = pytest.mark.unit


def case(key: str = "HUB-7K3F9QXM2A/crm", **data: Any) -> dict[str, Any]:
    item = {"source_system": "Council Connector Hub", "source_ref": key.split("/")[0], **data}
    return {"client_unique_identifier": key, "function": "case_to_crm_create_update_case", "data": [item]}


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def reference(response: httpx.Response) -> str:
    value: str = response.json()["data"][0]["data"][0]["liberty_create_case_reference"]
    return value


def test_creates_a_case_and_answers_in_the_liberty_create_shape(client: TestClient) -> None:
    response = client.post(CASE_PATH, json=case(first_name="Aoife"))
    assert response.status_code == 200
    assert response.json() == {
        "result": "success",
        "error_code": 0,
        "error_desc": "",
        "data": [
            {
                "result": "success",
                "error_code": 0,
                "error_desc": "",
                "data": [{"liberty_create_case_reference": "CAS-000001"}],
            }
        ],
    }
    [stored] = client.get("/_control/cases").json()
    assert stored == {
        "reference": "CAS-000001",
        "client_unique_identifier": "HUB-7K3F9QXM2A/crm",
        "received_count": 1,
        "record": case(first_name="Aoife"),
    }


def test_case_references_are_sequential(client: TestClient) -> None:
    refs = [reference(client.post(CASE_PATH, json=case(f"HUB-{n}/crm"))) for n in range(3)]
    assert refs == ["CAS-000001", "CAS-000002", "CAS-000003"]


def test_the_same_client_unique_identifier_returns_the_same_case_without_creating_another(client: TestClient) -> None:
    first = reference(client.post(CASE_PATH, json=case()))
    again = reference(client.post(CASE_PATH, json=case()))
    assert first == again == "CAS-000001"
    assert client.get("/_control/stats").json() == {"cases": 1, "requests": 2, "duplicates": 1}
    assert client.get("/_control/cases").json()[0]["received_count"] == 2


def test_accepts_the_case_wrapped_in_payload_as_the_drupal_webform_sends_it(client: TestClient) -> None:
    assert reference(client.post(CASE_PATH, json={"payload": case()})) == "CAS-000001"


def test_fails_the_next_n_requests_with_the_status_then_recovers(client: TestClient) -> None:
    client.post("/_control/fail", json={"count": 2, "mode": "status", "status": 503})
    statuses = [client.post(CASE_PATH, json=case()).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert client.get("/_control/stats").json() == {"cases": 1, "requests": 3, "duplicates": 0}


def test_a_timeout_waits_then_answers_504_without_recording_the_case(client: TestClient) -> None:
    client.post("/_control/fail", json={"count": 1, "mode": "timeout", "seconds": 0.2})
    started = time.monotonic()
    response = client.post(CASE_PATH, json=case())
    assert response.status_code == 504 and time.monotonic() - started >= 0.2
    assert client.get("/_control/stats").json()["cases"] == 0


def test_a_hang_records_the_case_before_the_late_answer_so_a_retry_is_deduped() -> None:
    state = CrmState()
    transport = httpx.ASGITransport(app=create_app(state))

    async def scenario() -> tuple[list[dict[str, Any]], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=transport, base_url="http://crm") as http:
            await http.post("/_control/fail", json={"count": 1, "mode": "hang", "seconds": 0.5})
            slow = asyncio.create_task(http.post(CASE_PATH, json=case()))
            await asyncio.sleep(0.2)
            seen_while_hanging = state.cases()
            retry = await http.post(CASE_PATH, json=case())  # the worker's retry after it gave up
            return seen_while_hanging, await slow, retry

    seen, slow, retry = asyncio.run(scenario())
    assert [c["reference"] for c in seen] == ["CAS-000001"]
    assert reference(slow) == reference(retry) == "CAS-000001"
    assert state.stats() == {"cases": 1, "requests": 2, "duplicates": 1}


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({}, ["client_unique_identifier", "function", "data"]),
        ({"client_unique_identifier": "x", "function": "case_to_crm_create_update_case", "data": []}, ["data"]),
        ({**case(), "data": [{"source_system": "Hub"}]}, ["data[0].source_ref"]),
        ({**case(), "data": [{"source_ref": "R"}, "nonsense"]}, ["data[0].source_system", "data[1].source_system", "data[1].source_ref"]),
    ],
)
def test_rejects_missing_required_fields_with_400_naming_them(
    client: TestClient, body: dict[str, Any], missing: list[str]
) -> None:
    response = client.post(CASE_PATH, json=body)
    assert response.status_code == 400
    assert response.json()["missing"] == missing
    assert response.json()["error_desc"] == f"Missing required fields: {', '.join(missing)}"
    assert client.get("/_control/stats").json()["cases"] == 0


def test_rejects_an_unknown_function_and_a_body_that_is_not_json(client: TestClient) -> None:
    assert client.post(CASE_PATH, json={**case(), "function": "drop_tables"}).status_code == 400
    assert client.post(CASE_PATH, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400


def test_enforces_the_bearer_token_when_one_is_set() -> None:
    client = TestClient(create_app(CrmState(token="s3cret")))
    assert client.post(CASE_PATH, json=case()).status_code == 401
    assert client.post(CASE_PATH, json=case(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.post(CASE_PATH, json=case(), headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and reference(ok) == "CAS-000001"


def test_enforces_basic_auth_when_it_is_set() -> None:
    client = TestClient(create_app(CrmState(basic=("hub", "pa55"))))
    good = base64.b64encode(b"hub:pa55").decode()
    assert client.post(CASE_PATH, json=case(), headers={"Authorization": "Basic aHViOm5v"}).status_code == 401
    assert client.post(CASE_PATH, json=case(), headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_refused_requests_do_not_use_up_injected_failures() -> None:
    client = TestClient(create_app(CrmState(token="s3cret")))
    client.post("/_control/fail", json={"count": 1})
    assert client.post(CASE_PATH, json=case()).status_code == 401
    assert client.post(CASE_PATH, json=case(), headers={"Authorization": "Bearer s3cret"}).status_code == 503


def test_reset_forgets_cases_counters_and_failures(client: TestClient) -> None:
    client.post(CASE_PATH, json=case())
    client.post("/_control/fail", json={"count": 5})
    assert client.post("/_control/reset").status_code == 200
    assert client.get("/_control/stats").json() == {"cases": 0, "requests": 0, "duplicates": 0}
    assert client.get("/_control/cases").json() == []
    assert reference(client.post(CASE_PATH, json=case())) == "CAS-000001"


def test_a_bad_failure_plan_is_refused(client: TestClient) -> None:
    assert client.post("/_control/fail", json={"count": 1, "mode": "explode"}).status_code == 422
