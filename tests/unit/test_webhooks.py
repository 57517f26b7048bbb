"""Front-end clients' webhooks: registered over the API, sent signed per Standard Webhooks (checked
with the `standardwebhooks` package, not the hub's code), rotated, retried, and kept per client."""

from __future__ import annotations

import base64
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
from sqlalchemy import select
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from hub.config.files import RetryPolicy
from hub.config.settings import Settings
from hub.delivery.webhook_sender import WebhookSender
from hub.store import webhooks as store
from hub.store.tables import webhooks as webhooks_table
from simulators.control import FailurePlan
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.webhook_receiver import Receiver

STATUS_SECRET = "crm-status-" + "77d1e0"
SAMPLE = json.loads((Settings().schemas_dir / "general-enquiry" / "samples" / "question-only.json").read_text())
FAST = RetryPolicy(max_attempts=4, base_seconds=0.05, cap_seconds=0.2)


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with embedded_hub(tmp_path, env={"CRM_STATUS_SECRET": STATUS_SECRET}) as running:
        tenants = running.runtime.config.tenants
        for name, tenant in list(tenants.items()):
            tenants[name] = tenant.model_copy(update={"allowed_hosts": ("127.0.0.1",)})
        yield running


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture()
def sender(hub: EmbeddedHub) -> Iterator[WebhookSender]:
    running = WebhookSender(hub.runtime, policy=FAST)
    yield running
    running.close()


def api(hub: EmbeddedHub, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
    return hub.client.request(method, f"/v1/webhooks{path}", headers={"Authorization": f"Bearer {key or hub.key}"}, **kwargs)


def register(hub: EmbeddedHub, url: str, **fields: Any) -> dict[str, Any]:
    answer = api(hub, "POST", "", json={"url": url, **fields})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def deliver(hub: EmbeddedHub) -> str:
    reference: str = hub.post("general-enquiry", SAMPLE).json()["reference"]
    hub.wait_until_settled(reference)
    return reference


def verified(secret: str, request: Any) -> Any:
    return StandardWebhook(secret).verify(request.body, request.headers)


def test_a_client_registers_a_webhook_and_is_shown_its_secret_once(hub: EmbeddedHub, receiver: Receiver) -> None:
    created = register(hub, receiver.url)
    assert created["url"] == receiver.url and created["id"].startswith("wh_")
    assert created["events"] == ["delivery.delivered", "delivery.parked", "submission.status_changed"]
    assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) >= 24
    [listed] = api(hub, "GET", "").json()["webhooks"]
    assert listed["id"] == created["id"] and "secret" not in listed and created["secret"] not in json.dumps(listed)
    with hub.runtime.engine.connect() as conn:
        stored = conn.execute(select(webhooks_table.c.secrets)).scalar_one()
    assert created["secret"][6:] not in stored  # sealed at rest


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.org/hub", "is not on tenant eastmoor's allowed_hosts"),
        ("http://169.254.169.254/latest/meta-data", "link-local or cloud metadata"),
        ("http://metadata.google.internal/computeMetadata", "link-local or cloud metadata"),
    ],
)
def test_a_webhook_url_must_be_an_allowed_host_of_the_clients_council(hub: EmbeddedHub, url: str, reason: str) -> None:
    answer = api(hub, "POST", "", json={"url": url})
    assert answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["pointer"] == "/url" and reason in error["detail"]
    assert api(hub, "GET", "").json() == {"webhooks": []}


def test_a_webhook_that_is_not_an_http_url_or_names_unknown_events_is_invalid(hub: EmbeddedHub) -> None:
    answer = api(hub, "POST", "", json={"url": "ftp://127.0.0.1/hub", "events": ["delivery.delivered", "case.exploded"]})
    assert answer.status_code == 422 and answer.json()["type"] == "/problems/validation-failed"
    assert sorted(e["pointer"] for e in answer.json()["errors"]) == ["/body/events/1", "/body/url"]
    assert api(hub, "GET", "").json() == {"webhooks": []}


def test_a_delivered_submission_is_announced_signed_as_standard_webhooks_says(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender
) -> None:
    secret = register(hub, receiver.url)["secret"]
    reference = deliver(hub)
    [request] = receiver.wait_for(1, tick=sender.run)
    event = verified(secret, request)
    case = hub.crm.cases()[0]["reference"]
    assert event["type"] == "delivery.delivered"
    assert event["data"] == {**event["data"], "reference": reference, "connector": "crm", "state": "delivered", "external_reference": case}
    assert request.headers["webhook-id"].startswith("msg_") and request.path == "/hooks/hub"
    # references, connector, status and times only: nothing the resident wrote
    assert "Jamal" not in request.body.decode() and "fridge" not in request.body.decode()
    [listed] = api(hub, "GET", "").json()["webhooks"]
    assert [(d["event_type"], d["state"], d["attempts"]) for d in listed["recent_deliveries"]] == [("delivery.delivered", "delivered", 1)]


def test_a_pushed_status_update_reaches_the_webhook_without_its_message(hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender) -> None:
    secret = register(hub, receiver.url, events=["submission.status_changed"])["secret"]
    reference = deliver(hub)
    case = hub.crm.cases()[0]["reference"]
    body = json.dumps({"external_reference": case, "status": "closed", "message": "Mr Haddad was phoned back"}).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(STATUS_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    pushed = hub.client.post("/v1/status-updates/crm", content=body, headers={"Hub-Signature": f"t={stamp},v1={signature}"})
    assert pushed.status_code == 202
    [request] = receiver.wait_for(1, tick=sender.run)  # the delivery itself was not asked for
    event = verified(secret, request)
    assert event["type"] == "submission.status_changed"
    assert event["data"] == {**event["data"], "reference": reference, "connector": "crm", "status": "closed", "final": True, "source": "push"}
    assert "Haddad" not in request.body.decode()


def test_after_a_rotation_both_secrets_sign_until_the_previous_one_is_dropped(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender
) -> None:
    created = register(hub, receiver.url)
    rotated = api(hub, "POST", f"/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    old, new = created["secret"], rotated.json()["secret"]
    assert new != old and new.startswith("whsec_")
    [listed] = api(hub, "GET", "").json()["webhooks"]
    expires = datetime.fromisoformat(listed["previous_secret_expires_at"])
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)

    deliver(hub)
    [first] = receiver.wait_for(1, tick=sender.run)
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, first) == verified(new, first)

    assert api(hub, "DELETE", f"/{created['id']}/previous-secret").status_code == 204
    assert api(hub, "GET", "").json()["webhooks"][0]["previous_secret_expires_at"] is None
    deliver(hub)
    second = receiver.wait_for(2, tick=sender.run)[1]
    assert verified(new, second)["type"] == "delivery.delivered"
    with pytest.raises(WebhookVerificationError):
        verified(old, second)


def test_the_previous_secret_stops_signing_24_hours_after_a_rotation() -> None:
    rotated_at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    hook = store.Webhook("wh_1", "eastmoor", "demo-portal", "http://127.0.0.1/", ("delivery.delivered",), rotated_at,
                         (store.Secret("whsec_new", rotated_at), store.Secret("whsec_old", rotated_at - timedelta(days=30))))
    assert [s.value for s in hook.valid_secrets(rotated_at + timedelta(hours=23))] == ["whsec_new", "whsec_old"]
    assert [s.value for s in hook.valid_secrets(rotated_at + timedelta(hours=24))] == ["whsec_new"]


def test_a_receiver_that_fails_at_first_gets_the_event_later_with_the_same_webhook_id(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender
) -> None:
    secret = register(hub, receiver.url)["secret"]
    receiver.fail_next = 2
    deliver(hub)
    while not receiver.received:
        sender.run()
    [waiting] = api(hub, "GET", "").json()["webhooks"][0]["recent_deliveries"]
    assert waiting == {**waiting, "state": "retrying", "attempts": 1, "last_error": "HTTP 503"}
    assert datetime.fromisoformat(waiting["next_attempt_at"]) > datetime.fromisoformat(waiting["updated_at"])
    [request] = receiver.wait_for(1, tick=sender.run)
    assert [r.answered for r in receiver.received] == [503, 503, 204]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert verified(secret, request)["type"] == "delivery.delivered"
    [done] = api(hub, "GET", "").json()["webhooks"][0]["recent_deliveries"]
    assert done == {**done, "state": "delivered", "attempts": 3, "next_attempt_at": None}


def test_an_event_the_receiver_keeps_refusing_fails_after_the_last_attempt(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender
) -> None:
    register(hub, receiver.url)
    receiver.fail_next, receiver.failure_status = 100, 500
    deliver(hub)
    deadline = time.monotonic() + 10
    while api(hub, "GET", "").json()["webhooks"][0]["recent_deliveries"][0]["state"] != "failed":
        assert time.monotonic() < deadline, receiver.received
        sender.run()
        time.sleep(0.02)
    assert len(receiver.received) == FAST.max_attempts
    [failed] = api(hub, "GET", "").json()["webhooks"][0]["recent_deliveries"]
    assert failed == {**failed, "attempts": FAST.max_attempts, "last_error": "HTTP 500"}


def test_a_redirect_is_never_followed(hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender) -> None:
    register(hub, receiver.url)
    receiver.redirect_to = "/elsewhere"
    deliver(hub)
    while not receiver.received:
        sender.run()
    time.sleep(0.2)
    assert [(r.path, r.answered) for r in receiver.received] == [("/hooks/hub", 307)]
    [waiting] = api(hub, "GET", "").json()["webhooks"][0]["recent_deliveries"]
    assert waiting["last_error"] == "HTTP 307 (redirects are not followed)"


def test_a_parked_delivery_is_announced(hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender) -> None:
    secret = register(hub, receiver.url, events=["delivery.parked"])["secret"]
    hub.crm.arm(FailurePlan(mode="status", status=400, count=1))
    reference = deliver(hub)
    [request] = receiver.wait_for(1, tick=sender.run)
    event = verified(secret, request)
    assert event["type"] == "delivery.parked" and event["data"]["reference"] == reference and event["data"]["state"] == "parked"


def test_another_councils_client_can_neither_see_nor_change_a_webhook(hub: EmbeddedHub, receiver: Receiver) -> None:
    created = register(hub, receiver.url)
    other = hub.westvale_key
    assert api(hub, "GET", "", key=other).json() == {"webhooks": []}
    for method, path in (("DELETE", ""), ("POST", "/rotate-secret"), ("DELETE", "/previous-secret")):
        answer = api(hub, method, f"/{created['id']}{path}", key=other)
        assert answer.status_code == 404 and answer.json()["type"] == "/problems/not-found", (method, path)
    assert [h["id"] for h in api(hub, "GET", "").json()["webhooks"]] == [created["id"]]


def test_a_deleted_webhook_gets_nothing_more(hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender) -> None:
    created = register(hub, receiver.url)
    assert api(hub, "DELETE", f"/{created['id']}").status_code == 204
    assert api(hub, "DELETE", f"/{created['id']}").status_code == 404
    deliver(hub)
    sender.run()
    assert receiver.received == [] and api(hub, "GET", "").json() == {"webhooks": []}


def test_webhooks_need_the_clients_api_key(hub: EmbeddedHub) -> None:
    answer = hub.client.get("/v1/webhooks")
    assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"


def test_an_unsupported_method_on_the_webhook_list_names_the_allowed_ones(hub: EmbeddedHub) -> None:
    answer = api(hub, "PUT", "", json={})
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"


def test_a_delivery_parked_because_its_key_was_removed_is_announced(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender
) -> None:
    from cryptography.fernet import Fernet

    from hub.privacy.sealing import UNKNOWN_KEY, Sealer

    secret = register(hub, receiver.url, events=["delivery.parked"])["secret"]
    assert hub.admin("POST", "/connectors/crm/pause").status_code == 200
    reference = hub.post("general-enquiry", SAMPLE).json()["reference"]
    # the key the payload was sealed with is dropped from HUB_ENCRYPTION_KEYS before it is sent
    kept = hub.runtime.sealer
    hub.runtime.sealer = Sealer.from_keys([Fernet.generate_key().decode()])
    assert hub.admin("POST", "/connectors/crm/resume").status_code == 200
    [delivery] = hub.wait_until_settled(reference, timeout=60)["deliveries"]
    assert delivery["state"] == "parked" and delivery["last_error"] == UNKNOWN_KEY
    hub.runtime.sealer = kept  # the webhook's secret was sealed with it too
    [request] = receiver.wait_for(1, tick=sender.run)
    event = verified(secret, request)
    assert event["type"] == "delivery.parked" and event["data"]["reference"] == reference
    assert hub.crm.stats()["requests"] == 0


def test_an_outcome_whose_event_cannot_be_queued_is_not_recorded_either_and_is_tried_again(
    hub: EmbeddedHub, receiver: Receiver, sender: WebhookSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the event is written in the transaction that records the delivery: when it fails, so does
    # the outcome, the message goes back to the queue, and the retry records both
    secret = register(hub, receiver.url, events=["delivery.delivered"])["secret"]
    failures = iter([True])
    enqueue = store.enqueue

    def failing_once(*args: Any, **kwargs: Any) -> int:
        if next(failures, False):
            raise RuntimeError("the database went away mid-transaction")
        return enqueue(*args, **kwargs)

    monkeypatch.setattr(store, "enqueue", failing_once)
    reference = deliver(hub)
    requests = receiver.wait_for(1, tick=sender.run)
    assert [verified(secret, r)["type"] for r in requests] == ["delivery.delivered"]
    assert verified(secret, requests[0])["data"]["reference"] == reference
    assert next(failures, None) is None  # the failure happened
    assert hub.crm.stats()["cases"] == 1
