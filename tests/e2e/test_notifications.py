"""Residents' messages end to end on the real processes (PostgreSQL, RabbitMQ, `hub api`,
`hub worker` with its background jobs) and the Notify simulator on loopback, spoken to by the real
`notifications-python-client`: an acknowledgement with the reference, a closing message when the
back office closes the case, and a Notify outage that delays messages but never delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from simulators.control import FailurePlan
from simulators.notify import DEMO_TEMPLATES, NotifyState, api_key, create_app
from tests.e2e.test_status_and_webhooks import STATUS_SECRET, allow_loopback_webhooks, until
from tests.support.processes import HubProcesses

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


@pytest.fixture()
def notify(stack: HubProcesses) -> Iterator[NotifyState]:
    state, key = NotifyState(), api_key("hub-e2e")
    state.add_key(key)
    for template in DEMO_TEMPLATES:
        state.add_template(template)
    server = ServerThread(create_app(state)).start()
    stack.env.update({"HUB_NOTIFY_API_KEY": key, "HUB_NOTIFY_BASE_URL": server.url, "HUB_NOTIFY_RETRY_BASE_SECONDS": "0.5"})
    yield state
    server.stop()


def push(api: str, external_reference: str, status: str) -> None:
    body = json.dumps({"external_reference": external_reference, "status": status}).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(STATUS_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    pushed = httpx.post(f"{api}/v1/status-updates/crm", content=body, headers={"Hub-Signature": f"t={stamp},v1={signature}"})
    assert pushed.status_code == 202, pushed.text


def sent_for(notify: NotifyState, reference: str) -> list[dict[str, Any]]:
    return [n for n in notify.sent() if n["reference"] and n["reference"].startswith(reference + "/")]


def rated(api: str, token: str, form: str) -> dict[str, Any]:
    """The form's figures as its tenant's staff read them (a form nobody rated yet: count 0)."""
    figures = httpx.get(f"{api}/v1/admin/ratings", params={"form": form}, headers={"Authorization": f"Bearer {token}"})
    assert figures.status_code == 200, figures.text
    return next((f for f in figures.json() if f["form"] == form), {"count": 0, "distribution": {str(s): 0 for s in range(1, 6)}})


def test_the_resident_hears_on_receipt_and_when_the_case_is_closed(stack: HubProcesses, notify: NotifyState) -> None:
    allow_loopback_webhooks(stack)
    # the demo portal's tenant's operator reads the ratings
    staff_token = stack.env["EASTMOOR_OPERATOR_TOKEN"] = "eastmoor-" + secrets.token_hex(8)
    api = stack.start_api()
    stack.start_worker()
    with stack.client() as client:
        reference = client.post("/v1/forms/missed-bin-collection/submissions", json=SAMPLE).json()["reference"]
        [delivery] = stack.wait_settled([reference])[reference]["deliveries"]
        [ack] = until(lambda: sent_for(notify, reference), what="the acknowledgement at Notify")
        assert ack["email_address"] == SAMPLE["email"] and reference in ack["subject"]
        early = client.post(f"/v1/submissions/{reference}/rating", json={"score": 4})
        assert early.status_code == 409, early.text  # not closed yet: nothing to rate
        before = rated(api, staff_token, "missed-bin-collection")
        push(api, delivery["external_reference"], "closed")
        closing = until(lambda: len(found := sent_for(notify, reference)) == 2 and found[1], what="the closing message")
        assert closing["subject"] == f"Request {reference} closed"
        status = client.get(f"/v1/submissions/{reference}").json()
        assert [(m["kind"], m["state"]) for m in status["notifications"]] == [("acknowledgement", "sent"), ("closed", "sent")]
        # the closed case is rated by its resident, and the rating is counted for its form
        rating = client.post(f"/v1/submissions/{reference}/rating", json={"score": 4, "comment": "Collected the next day"})
        assert rating.status_code == 201, rating.text
        after = rated(api, staff_token, "missed-bin-collection")
        assert after["count"] == before["count"] + 1
        assert after["distribution"]["4"] == before["distribution"]["4"] + 1
    logs = stack.all_logs()
    assert SAMPLE["email"] not in logs and "Collected the next day" not in logs


def test_a_notify_outage_delays_the_message_not_the_delivery(stack: HubProcesses, notify: NotifyState) -> None:
    notify.failures.arm(FailurePlan(count=3, mode="status", status=503))
    stack.start_api()
    stack.start_worker()
    with stack.client() as client:
        reference = client.post("/v1/forms/missed-bin-collection/submissions", json=SAMPLE).json()["reference"]
        [delivery] = stack.wait_settled([reference])[reference]["deliveries"]
        assert delivery["state"] == "delivered"
        waiting = until(lambda: [m for m in client.get(f"/v1/submissions/{reference}").json()["notifications"]
                                 if m["state"] == "retrying"], what="the message waiting to be retried")
        assert "503" in waiting[0]["last_error"]
        until(lambda: sent_for(notify, reference), what="the acknowledgement after Notify recovered")
        [done] = client.get(f"/v1/submissions/{reference}").json()["notifications"]
        assert done["state"] == "sent" and done["attempts"] == 4
