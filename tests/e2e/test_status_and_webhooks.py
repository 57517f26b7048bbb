"""Status back to the front end, end to end on the real processes (PostgreSQL, RabbitMQ, `hub api`,
`hub worker` with its background jobs): a back office pushes or is polled, the front end sees the
change in its timeline and receives it at its webhook, signed per Standard Webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks import Webhook as StandardWebhook

from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from tests.support.processes import HubProcesses
from tests.support.webhook_receiver import Receiver

SCHEMAS = Settings().schemas_dir
STATUS_SECRET = "crm-push-" + "5be0c1d7"


def sample(form_id: str, name: str) -> Any:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def allow_loopback_webhooks(stack: HubProcesses) -> None:
    """The councils' allow-lists name the loopback receiver (in the stack's private config copy)."""
    stack.override_connector("crm", status_updates={"secret_env": "CRM_STATUS_SECRET"})
    path = stack.workdir / "config" / "tenants.yaml"
    document = yaml.safe_load(path.read_text())
    for tenant in document["tenants"]:
        tenant["allowed_hosts"] = ["127.0.0.1"]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    stack.env["CRM_STATUS_SECRET"] = STATUS_SECRET


def until(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def events(receiver: Receiver, secret: str) -> dict[str, Any]:
    """Every accepted request, verified by the standardwebhooks package, by event type."""
    return {event["type"]: event for event in (StandardWebhook(secret).verify(r.body, r.headers) for r in receiver.accepted())}


def test_a_pushed_status_reaches_the_timeline_and_the_front_ends_webhook(stack: HubProcesses, receiver: Receiver) -> None:
    allow_loopback_webhooks(stack)
    api = stack.start_api()
    stack.start_worker()
    with stack.client() as client:
        created = client.post("/v1/webhooks", json={"url": receiver.url})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        reference = client.post("/v1/forms/general-enquiry/submissions", json=sample("general-enquiry", "question-only")).json()["reference"]
        [delivery] = stack.wait_settled([reference])[reference]["deliveries"]

        # the back office's clock is two days slow: its answer must still come after the question
        occurred_at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
        body = json.dumps({"external_reference": delivery["external_reference"], "status": "resolved",
                           "message": "Answered by phone", "occurred_at": occurred_at.isoformat()}).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(STATUS_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        pushed = httpx.post(f"{api}/v1/status-updates/crm", content=body, headers={"Hub-Signature": f"t={stamp},v1={signature}"})
        assert pushed.status_code == 202, pushed.text

        timeline = client.get(f"/v1/submissions/{reference}").json()["timeline"]
        assert [(e["event"], e["status"], e["source"]) for e in timeline] == [
            ("received", None, "hub"), ("delivered", None, "hub"), ("status", "resolved", "push"),
        ]
        assert timeline[-1]["occurred_at"] == occurred_at.isoformat()
        got = until(lambda: (found := events(receiver, secret)).keys() >= {"delivery.delivered", "submission.status_changed"} and found,
                    what="both webhook events")
    assert got["delivery.delivered"]["data"]["external_reference"] == delivery["external_reference"]
    assert got["submission.status_changed"]["data"] == {
        **got["submission.status_changed"]["data"], "reference": reference, "status": "resolved", "final": True,
        "occurred_at": occurred_at.isoformat(),
    }
    assert "Answered by phone" not in b"".join(r.body for r in receiver.received).decode()


def test_a_polled_open311_status_reaches_the_timeline_and_the_webhook(stack: HubProcesses, receiver: Receiver) -> None:
    street = Open311State(api_key="street-key-e2e")
    server = ServerThread(create_open311(street)).start()
    try:
        allow_loopback_webhooks(stack)
        stack.override_connector("street-cleansing", status_updates={"poll_seconds": 1})
        stack.env.update({"STREET_CLEANSING_OPEN311_URL": server.url + PREFIX, "STREET_CLEANSING_OPEN311_API_KEY": street.api_key})
        stack.start_api()
        stack.start_worker()
        with stack.client() as client:
            secret = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["submission.status_changed"]}).json()["secret"]
            payload = sample("report-fly-tipping", "coordinates-anonymous")
            reference = client.post("/v1/forms/report-fly-tipping/submissions", json=payload).json()["reference"]
            deliveries = {d["connector"]: d for d in stack.wait_settled([reference])[reference]["deliveries"]}
            request_id = deliveries["street-cleansing"]["external_reference"]

            def statuses() -> list[Any]:
                timeline = client.get(f"/v1/submissions/{reference}").json()["timeline"]
                return [(e["status"], e["source"]) for e in timeline if e["event"] == "status"]

            until(lambda: statuses() == [("open", "poll")], what="the first poll")
            street.set_status(request_id, "closed", "Cleared by the crew")
            until(lambda: statuses() == [("open", "poll"), ("closed", "poll")], what="the closed status")
            got = until(lambda: (found := events(receiver, secret)) and [
                StandardWebhook(secret).verify(r.body, r.headers)["data"]["status"] for r in receiver.accepted()
            ] == ["open", "closed"] and found, what="two status webhooks")
        assert got["submission.status_changed"]["data"]["source"] == "poll"
    finally:
        server.stop()
