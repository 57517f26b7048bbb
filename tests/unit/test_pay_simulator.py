"""The GOV.UK Pay simulator answers in the shapes of GOV.UK Pay's own OpenAPI document
(../shared/realworld/govuk-pay/publicapi_spec.json): every response validates against the
operation's schema, and carries no property the schema does not name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openapi_schema_validator import OAS30Validator

from simulators.pay import PayState, create_app

pytestmark = pytest.mark.unit

SPEC_PATH = Path(__file__).resolve().parents[2] / ".." / "shared" / "realworld" / "govuk-pay" / "publicapi_spec.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
KEY = "api_test_unit"


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    answer = SPEC["paths"][path][method]["responses"][str(status)]
    return answer["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def unknown_properties(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Pointers of properties the spec's schema does not name (the spec leaves additionalProperties open)."""
    schema = resolve(schema)
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for name, item in value.items():
            if name not in schema["properties"]:
                found.append(f"{where}/{name}")
            else:
                found += unknown_properties(item, schema["properties"][name], f"{where}/{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += unknown_properties(item, schema["items"], f"{where}/{index}")
    return found


def assert_conforms(response: httpx.Response, path: str, method: str) -> dict[str, Any]:
    schema = response_schema(path, method, response.status_code)
    body = response.json()
    OAS30Validator({**schema, "components": SPEC["components"]}).validate(body)
    assert unknown_properties(body, schema) == []
    return body  # type: ignore[no-any-return]


def simulator(expiry_seconds: float = 3600) -> TestClient:
    return TestClient(create_app(PayState(KEY, base_url="http://pay.test", expiry_seconds=expiry_seconds)),
                      base_url="http://pay.test", follow_redirects=False)


@pytest.fixture
def pay() -> TestClient:
    return simulator()


NEW = {"amount": 5500, "description": "Garden waste subscription", "reference": "EDC-ABC123", "return_url": "https://hub.test/back"}


def test_create_answers_created_with_a_next_url_in_the_specs_shape(pay: TestClient) -> None:
    with pay:
        response = pay.post("/v1/payments", json=NEW, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 201
        body = assert_conforms(response, "/v1/payments", "post")
    assert body["state"] == {"status": "created", "finished": False}
    assert body["_links"]["next_url"]["href"].startswith("http://pay.test/secure/")
    assert body["amount"] == 5500 and body["reference"] == "EDC-ABC123"


def test_get_and_events_follow_a_completed_payment_in_the_specs_shape(pay: TestClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with pay:
        created = (pay.post("/v1/payments", json=NEW, headers=auth)).json()
        payment_id = created["payment_id"]
        page = pay.get(f"/secure/{payment_id}")
        assert "Pay now" in page.text
        chosen = pay.post(f"/secure/{payment_id}/complete")
        assert chosen.status_code == 303 and chosen.headers["location"] == NEW["return_url"]
        got = assert_conforms(pay.get(f"/v1/payments/{payment_id}", headers=auth), "/v1/payments/{paymentId}", "get")
        events = assert_conforms(pay.get(f"/v1/payments/{payment_id}/events", headers=auth),
                                 "/v1/payments/{paymentId}/events", "get")
    assert got["state"] == {"status": "success", "finished": True}
    assert "next_url" not in got["_links"]
    assert [e["state"]["status"] for e in events["events"]] == ["created", "started", "submitted", "success"]


def test_a_declined_card_and_a_cancel_finish_with_the_specs_codes(pay: TestClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with pay:
        states = []
        for action in ("fail", "cancel"):
            payment_id = (pay.post("/v1/payments", json=NEW, headers=auth)).json()["payment_id"]
            pay.post(f"/_control/payments/{payment_id}/{action}")
            states.append(assert_conforms(pay.get(f"/v1/payments/{payment_id}", headers=auth),
                                          "/v1/payments/{paymentId}", "get")["state"])
    assert [(s["status"], s["finished"], s["code"]) for s in states] == [("failed", True, "P0010"), ("cancelled", True, "P0030")]


def test_an_abandoned_payment_expires_after_the_configured_time() -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with simulator(expiry_seconds=0) as pay:
        payment_id = (pay.post("/v1/payments", json=NEW, headers=auth)).json()["payment_id"]
        got = assert_conforms(pay.get(f"/v1/payments/{payment_id}", headers=auth), "/v1/payments/{paymentId}", "get")
    # GOV.UK Pay's expired payment: failed, code P0020
    assert (got["state"]["status"], got["state"]["code"], got["state"]["finished"]) == ("failed", "P0020", True)


def test_bad_requests_unknown_payments_and_outages_answer_the_specs_errors(pay: TestClient) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    with pay:
        missing = pay.post("/v1/payments", json={"amount": 100}, headers=auth)
        assert missing.status_code == 400
        assert assert_conforms(missing, "/v1/payments", "post")["field"] == "description"
        too_much = pay.post("/v1/payments", json=NEW | {"amount": 10_000_001}, headers=auth)
        assert too_much.status_code == 422 and assert_conforms(too_much, "/v1/payments", "post")["field"] == "amount"
        unknown = pay.get("/v1/payments/nosuchpayment", headers=auth)
        assert unknown.status_code == 404 and assert_conforms(unknown, "/v1/payments/{paymentId}", "get")["code"] == "P0200"
        assert (pay.post("/v1/payments", json=NEW)).status_code == 401
        pay.post("/_control/fail", json={"count": 1, "status": 500})
        down = pay.post("/v1/payments", json=NEW, headers=auth)
        assert down.status_code == 500 and assert_conforms(down, "/v1/payments", "post")["code"] == "P0999"


def test_a_repeated_idempotency_key_returns_the_first_payment(pay: TestClient) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": "EDC-ABC123"}
    with pay:
        first = pay.post("/v1/payments", json=NEW, headers=headers)
        again = pay.post("/v1/payments", json=NEW, headers=headers)
    assert first.json()["payment_id"] == again.json()["payment_id"]
