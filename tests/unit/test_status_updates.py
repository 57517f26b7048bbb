"""Back offices push signed status updates; the front end sees them in its submission's timeline."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.config.settings import Settings
from hub.store.tables import status_events
from tests.support.embedded import EmbeddedHub, embedded_hub

SECRET = "crm-status-" + "0f3c9a7e5d1b"
SAMPLE = json.loads((Settings().schemas_dir / "general-enquiry" / "samples" / "question-only.json").read_text())


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with embedded_hub(tmp_path, env={"CRM_STATUS_SECRET": SECRET}) as running:
        yield running


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if at is None else at)
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Hub-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}


def push(hub: EmbeddedHub, update: Any, connector: str = "crm", headers: dict[str, str] | None = None) -> httpx.Response:
    body = json.dumps(update).encode()
    return hub.client.post(f"/v1/status-updates/{connector}", content=body, headers=headers if headers is not None else signed(body))


def delivered(hub: EmbeddedHub) -> tuple[str, str]:
    """A general enquiry delivered to the CRM: (hub reference, CRM case reference)."""
    reference = hub.post("general-enquiry", SAMPLE).json()["reference"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    return reference, delivery["external_reference"]


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{kind}" and body["status"] == status and body["detail"]
    return body


def test_a_signed_update_joins_the_timeline_after_received_and_delivered(hub: EmbeddedHub) -> None:
    reference, case = delivered(hub)
    answer = push(hub, {"external_reference": case, "status": "in_progress", "message": "Passed to the waste team",
                        "occurred_at": "2099-01-01T09:30:00+00:00"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {**answer.json(), "reference": reference, "connector": "crm", "external_reference": case, "status": "in_progress"}
    timeline = hub.status(reference).json()["timeline"]
    assert [(e["event"], e["connector"], e["status"]) for e in timeline] == [
        ("received", None, None), ("delivered", "crm", None), ("status", "crm", "in_progress"),
    ]
    # ordered by when the hub recorded it; the back office's own time is shown beside it
    assert timeline[2] == {**timeline[2], "message": "Passed to the waste team", "source": "push",
                           "external_reference": case, "occurred_at": "2099-01-01T09:30:00+00:00"}
    assert timeline[1]["at"] <= timeline[2]["at"] < "2099"


def test_a_status_whose_clock_is_behind_still_comes_after_received_and_delivered(hub: EmbeddedHub) -> None:
    reference, case = delivered(hub)
    slow_clock = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
    assert push(hub, {"external_reference": case, "status": "closed", "occurred_at": slow_clock.isoformat()}).status_code == 202
    timeline = hub.status(reference).json()["timeline"]
    assert [e["event"] for e in timeline] == ["received", "delivered", "status"]
    assert timeline[2]["occurred_at"] == slow_clock.isoformat()


def test_a_repeated_push_is_recorded_once_and_answered_the_same(hub: EmbeddedHub) -> None:
    reference, case = delivered(hub)
    update = {"external_reference": case, "status": "closed", "occurred_at": "2026-11-24T10:00:00Z"}
    first, again = push(hub, update), push(hub, update)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(status_events)).scalar_one() == 1
    assert [e["status"] for e in hub.status(reference).json()["timeline"] if e["event"] == "status"] == ["closed"]


def test_the_back_office_may_name_the_record_by_the_hubs_reference_and_give_its_own_update_id(hub: EmbeddedHub) -> None:
    reference, _ = delivered(hub)
    assert push(hub, {"reference": reference, "status": "assigned", "update_id": "upd-1"}).status_code == 202
    assert push(hub, {"reference": reference, "status": "assigned", "update_id": "upd-2"}).status_code == 202
    assert push(hub, {"reference": reference, "status": "assigned", "update_id": "upd-2"}).status_code == 202
    assert [e["status"] for e in hub.status(reference).json()["timeline"] if e["event"] == "status"] == ["assigned", "assigned"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Hub-Signature": "sha256=abc", "Content-Type": "application/json"},
        "wrong-secret",
        "ten-minutes-old",
    ],
    ids=["missing", "malformed", "wrong-secret", "too-old"],
)
def test_an_update_not_signed_as_agreed_is_refused_and_not_recorded(hub: EmbeddedHub, headers: Any) -> None:
    _, case = delivered(hub)
    body = json.dumps({"external_reference": case, "status": "closed"}).encode()
    if headers == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif headers == "ten-minutes-old":
        headers = signed(body, at=int(time.time()) - 600)
    answer = hub.client.post("/v1/status-updates/crm", content=body, headers=headers)
    problem = assert_problem(answer, 401, "invalid-signature")
    assert SECRET not in answer.text and problem["title"] == "The request is not signed as agreed"
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(status_events)).scalar_one() == 0


def test_a_signature_over_another_body_does_not_match(hub: EmbeddedHub) -> None:
    _, case = delivered(hub)
    headers = signed(json.dumps({"external_reference": case, "status": "open"}).encode())
    answer = push(hub, {"external_reference": case, "status": "closed"}, headers=headers)
    assert assert_problem(answer, 401, "invalid-signature")["detail"] == "The signature does not match."


def test_connectors_without_a_shared_secret_and_unknown_connectors_take_no_updates(hub: EmbeddedHub) -> None:
    _, case = delivered(hub)
    for connector in ("garden-waste", "no-such-connector"):
        assert_problem(push(hub, {"external_reference": case, "status": "closed"}, connector=connector), 401, "invalid-signature")


def test_an_update_for_a_record_the_connector_never_received_is_not_found(hub: EmbeddedHub) -> None:
    reference, _ = delivered(hub)
    assert_problem(push(hub, {"external_reference": "CAS-999999", "status": "closed"}), 404, "not-found")
    # the hub's reference with another connector's case number is not this record either
    assert_problem(push(hub, {"reference": reference, "external_reference": "CAS-999999", "status": "closed"}), 404, "not-found")


def test_an_invalid_update_names_every_failing_field(hub: EmbeddedHub) -> None:
    answer = push(hub, {"status": "not a <status>!", "occurred_at": "2026-11-24T10:00:00", "colour": "red", "message": 5})
    problem = assert_problem(answer, 422, "validation-failed")
    assert sorted(e["pointer"] for e in problem["errors"]) == ["/colour", "/message", "/occurred_at", "/status"]
    answer = push(hub, {"status": "closed"})
    assert [e["pointer"] for e in assert_problem(answer, 422, "validation-failed")["errors"]] == ["/external_reference"]


def test_a_body_that_is_not_json_is_a_bad_request_once_signed(hub: EmbeddedHub) -> None:
    body = b"status=closed"
    assert_problem(hub.client.post("/v1/status-updates/crm", content=body, headers=signed(body)), 400, "malformed-json")


def test_a_tenants_front_end_does_not_see_another_tenants_timeline(hub: EmbeddedHub) -> None:
    reference, case = delivered(hub)
    push(hub, {"external_reference": case, "status": "closed"})
    assert hub.status(reference, key=hub.westvale_key).status_code == 404


def test_the_crm_simulator_pushes_a_signed_case_update_that_the_hub_accepts(hub: EmbeddedHub) -> None:
    reference, case = delivered(hub)
    hub.crm.status_secret, hub.crm.hub_url = SECRET, hub.url
    answer = httpx.post(f"{hub.runtime.secrets._environ['CRM_URL']}/_control/cases/{case}/status", json={"status": "closed", "message": "Done"})
    assert answer.status_code == 200 and answer.json()["hub_status"] == 202, answer.text
    [event] = [e for e in hub.status(reference).json()["timeline"] if e["event"] == "status"]
    assert (event["status"], event["message"], event["source"]) == ("closed", "Done", "push")
    hub.crm.status_secret = "a-secret-the-hub-does-not-know"
    refused = httpx.post(f"{hub.runtime.secrets._environ['CRM_URL']}/_control/cases/{case}/status", json={"status": "reopened"})
    assert refused.json()["hub_status"] == 401
