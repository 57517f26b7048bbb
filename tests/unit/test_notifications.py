"""Residents' messages through GOV.UK Notify: the hub's sender, with the real
`notifications-python-client`, talking HTTP to the Notify simulator, on the embedded hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hub.api.server_thread import ServerThread
from hub.config.files import RetryPolicy
from hub.config.settings import Settings
from hub.errors import ConfigError
from hub.logs import captured
from hub.notifications.config import FormNotifications, Message, NotificationConfig, load_notification_config
from hub.notifications.sender import NotificationSender
from hub.privacy import subjects
from hub.store import status_events
from simulators.control import FailurePlan
from simulators.notify import DEMO_TEMPLATES, NotifyState, api_key, create_app
from tests.support.embedded import EmbeddedHub, embedded_hub

pytestmark = pytest.mark.unit
SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
FAST = RetryPolicy(max_attempts=4, base_seconds=0.01, cap_seconds=0.02)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[EmbeddedHub, NotifyState, str]]:
    state, key = NotifyState(), api_key("hub-test")
    state.add_key(key)
    for template in DEMO_TEMPLATES:
        state.add_template(template)
    server = ServerThread(create_app(state)).start()
    with embedded_hub(tmp_path) as hub:
        hub.runtime.settings.notify_api_key = SecretStr(key)
        hub.runtime.settings.notify_base_url = server.url
        yield hub, state, key
    server.stop()


def sender(hub: EmbeddedHub) -> NotificationSender:
    return NotificationSender(hub.runtime, policy=FAST, timeout=5)


def close(hub: EmbeddedHub, reference: str, status: str = "closed") -> None:
    """What a back office's signed status push records (hub/api/routes/status_updates.py)."""
    target = status_events.find_target(hub.runtime.engine, "crm", None, reference)
    assert target is not None
    status_events.record(hub.runtime.engine, target, status, None, datetime.now(UTC), "push", status_events.dedupe_key("t", reference, status))


def messages(hub: EmbeddedHub, reference: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = hub.status(reference).json()["notifications"]
    return found


def test_the_resident_gets_an_acknowledgement_with_the_reference_then_a_closing_message(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, notify, _ = world
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    hub.wait_until_settled(reference)
    with captured() as logs:
        assert sender(hub).run() == 1
    [ack] = notify.sent()
    assert ack["email_address"] == SAMPLE["email"] and reference in ack["subject"] and "Report a missed bin collection" in ack["body"]
    assert ack["reference"] == f"{reference}/acknowledgement"
    assert [(m["kind"], m["state"], m["channel"]) for m in messages(hub, reference)] == [("acknowledgement", "sent", "email")]
    assert sender(hub).run() == 0, "an acknowledgement is sent once"

    close(hub, reference, "closed")
    assert sender(hub).run() == 1
    closing = notify.sent()[-1]
    assert closing["subject"] == f"Request {reference} closed" and "now closed" in closing["body"]
    assert [m["state"] for m in messages(hub, reference)] == ["sent", "sent"]
    assert SAMPLE["email"] not in logs.getvalue() and "notification_sent" in logs.getvalue()


def test_a_form_configured_for_text_messages_sends_one_to_the_residents_mobile(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, notify, _ = world
    texts = NotificationConfig(notifications=(FormNotifications(
        form="missed-bin-collection", tenants=("eastmoor",), phone="/phone",
        acknowledgement=Message(sms_template=DEMO_TEMPLATES[2].id, personalisation={"reference": "reference"})),))
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    assert NotificationSender(hub.runtime, config=texts, policy=FAST, timeout=5).run() == 1
    [text] = notify.sent()
    assert text["type"] == "sms" and text["phone_number"] == SAMPLE["phone"] and reference in text["body"]


def test_a_notify_outage_is_retried_and_never_holds_up_delivery(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, notify, _ = world
    notify.failures.arm(FailurePlan(count=2, mode="status", status=503))
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    assert [d["state"] for d in hub.wait_until_settled(reference)["deliveries"]] == ["delivered"]
    assert sender(hub).run() == 0
    [waiting] = messages(hub, reference)
    assert waiting["state"] == "retrying" and "503" in waiting["last_error"] and waiting["next_attempt_at"]
    sent = 0
    for _ in range(50):  # the fast policy waits at most 20 ms between attempts
        sent += sender(hub).run()
        if sent:
            break
    [done] = messages(hub, reference)
    assert done["state"] == "sent" and done["attempts"] == 3 and len(notify.sent()) == 1


def test_a_wrong_api_key_fails_the_message_with_notifys_reason(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, notify, _ = world
    hub.runtime.settings.notify_api_key = SecretStr(api_key("hub-test"))  # a key Notify never issued
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    assert sender(hub).run() == 0
    [failed] = messages(hub, reference)
    assert failed["state"] == "failed" and "403" in failed["last_error"] and "Invalid token" in failed["last_error"]
    assert notify.sent() == [] and notify.stats()["refused"] == 1


def test_an_erased_submission_gets_no_message(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, notify, _ = world
    reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    hub.wait_until_settled(reference)
    assert subjects.erase(hub.runtime, "eastmoor", SAMPLE["email"], "test:caseworker")
    assert sender(hub).run() == 0 and notify.sent() == []


def test_no_key_means_no_notifications_job(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, _, _ = world
    hub.runtime.settings.notify_api_key = None
    assert not sender(hub).enabled


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "notifications").mkdir()
    (tmp_path / "notifications" / "notifications.yaml").write_text(text)
    return tmp_path


def test_bad_configuration_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "notifications:\n  - form: missed-bin-collection\n    email: /email\n"
                           "    acknowledgement: {email_template: not-a-uuid, personalisation: {ref: refrence}}\n")
    with pytest.raises(ConfigError) as bad:
        load_notification_config(path)
    text = str(bad.value)
    assert "notifications.0.acknowledgement.email_template" in text and "not-a-uuid" in text
    assert "notifications.0.acknowledgement.personalisation" in text and "refrence" in text


def test_a_template_needing_an_address_the_form_does_not_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "notifications:\n  - form: nope\n    tenants: [nowhere]\n"
                           f"    closed: {{sms_template: {DEMO_TEMPLATES[3].id}}}\n")
    with pytest.raises(ConfigError) as bad:
        load_notification_config(path, tenants={"eastmoor"}, forms={"missed-bin-collection"})
    text = str(bad.value)
    assert "notifications.0.form: no form 'nope'" in text and "no tenant 'nowhere'" in text and "notifications.0.phone" in text


def test_ratings_after_completion_are_counted_per_form_and_bad_ones_refused(world: tuple[EmbeddedHub, NotifyState, str]) -> None:
    hub, _, _ = world
    auth = {"Authorization": f"Bearer {hub.key}"}
    first, second = (hub.post("missed-bin-collection", SAMPLE).json()["reference"] for _ in range(2))
    hub.wait_until_settled(first)
    hub.wait_until_settled(second)
    early = hub.client.post(f"/v1/submissions/{first}/rating", json={"score": 4}, headers=auth)
    assert early.status_code == 409 and "not completed" in early.json()["detail"]
    close(hub, first)
    close(hub, second, "resolved")
    for bad in (0, 6):
        refused = hub.client.post(f"/v1/submissions/{first}/rating", json={"score": bad}, headers=auth)
        assert refused.status_code == 422 and "/score" in refused.text
    assert hub.client.post(f"/v1/submissions/{first}/rating", json={"score": 5, "comment": "Aoife was pleased"}, headers=auth).status_code == 201
    assert hub.client.post(f"/v1/submissions/{second}/rating", json={"score": 2}, headers=auth).status_code == 201
    again = hub.client.post(f"/v1/submissions/{first}/rating", json={"score": 1}, headers=auth)
    assert again.status_code == 409 and "already" in again.json()["detail"]
    other = hub.client.post(f"/v1/submissions/{first}/rating", json={"score": 1}, headers={"Authorization": f"Bearer {hub.westvale_key}"})
    assert other.status_code == 404
    [figures] = hub.admin("GET", "/ratings", params={"form": "missed-bin-collection"}).json()
    assert figures["count"] == 2 and figures["mean"] == 3.5 and figures["distribution"]["5"] == 1 and figures["distribution"]["2"] == 1
    assert hub.admin("GET", "/ratings", token=hub.westvale_staff_token).json() == []
