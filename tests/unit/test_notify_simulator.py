"""The Notify simulator, spoken to by the real `notifications-python-client` over HTTP: it sends
from templates, reads notifications back, and refuses a token not signed with the service's key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from notifications_python_client.errors import HTTPError
from notifications_python_client.notifications import NotificationsAPIClient

from hub.api.server_thread import ServerThread
from simulators.control import FailurePlan
from simulators.notify import DEMO_TEMPLATES, NotifyState, api_key, create_app, split_key

pytestmark = pytest.mark.unit
ACK_EMAIL, _, ACK_SMS, _ = (t.id for t in DEMO_TEMPLATES)


@pytest.fixture()
def notify() -> Iterator[tuple[str, str, NotifyState]]:
    state, key = NotifyState(), api_key("hub-test")
    state.add_key(key)
    for template in DEMO_TEMPLATES:
        state.add_template(template)
    server = ServerThread(create_app(state)).start()
    yield server.url, key, state
    server.stop()


def test_an_email_sent_through_the_real_client_arrives_with_its_personalisation(notify: tuple[str, str, NotifyState]) -> None:
    url, key, state = notify
    client = NotificationsAPIClient(key, base_url=url, timeout=5)
    sent = client.send_email_notification("resident@example.org", ACK_EMAIL, {"reference": "EDC-ABC123", "form_title": "Missed bin"},
                                          reference="EDC-ABC123/acknowledgement")
    assert "EDC-ABC123" in sent["content"]["subject"] and "Missed bin" in sent["content"]["body"]
    read = client.get_notification_by_id(sent["id"])
    assert read["email_address"] == "resident@example.org" and read["reference"] == "EDC-ABC123/acknowledgement"
    assert read["status"] == "delivered" and [n["id"] for n in state.sent()] == [sent["id"]]


def test_a_text_message_is_sent_from_an_sms_template(notify: tuple[str, str, NotifyState]) -> None:
    url, key, _ = notify
    sent = NotificationsAPIClient(key, base_url=url, timeout=5).send_sms_notification("07700900123", ACK_SMS, {"reference": "EDC-1"})
    assert sent["content"]["body"].endswith("Reference EDC-1.")


def test_a_token_signed_with_another_secret_is_refused_as_notify_refuses_it(notify: tuple[str, str, NotifyState]) -> None:
    url, key, state = notify
    service_id, _ = split_key(key)
    wrong = api_key("hub-test", service_id)  # the right service, another secret
    with pytest.raises(HTTPError) as refused:
        NotificationsAPIClient(wrong, base_url=url, timeout=5).send_email_notification("r@example.org", ACK_EMAIL, {"reference": "x", "form_title": "y"})
    assert refused.value.status_code == 403 and "Invalid token" in refused.value.message[0]["message"]
    with pytest.raises(HTTPError) as unknown:
        NotificationsAPIClient(api_key("other"), base_url=url, timeout=5).send_sms_notification("07700900123", ACK_SMS, {"reference": "x"})
    assert unknown.value.status_code == 403
    assert state.sent() == [] and state.stats()["refused"] == 2


def test_missing_personalisation_and_unknown_templates_are_400s_naming_what_is_wrong(notify: tuple[str, str, NotifyState]) -> None:
    url, key, _ = notify
    client = NotificationsAPIClient(key, base_url=url, timeout=5)
    with pytest.raises(HTTPError) as missing:
        client.send_email_notification("r@example.org", ACK_EMAIL, {"reference": "x"})
    assert missing.value.status_code == 400 and "form_title" in missing.value.message[0]["message"]
    with pytest.raises(HTTPError) as unknown:
        client.send_email_notification("r@example.org", "00000000-0000-0000-0000-000000000000", {})
    assert "Template not found" in unknown.value.message[0]["message"]


def test_an_outage_answers_503_until_it_is_over(notify: tuple[str, str, NotifyState]) -> None:
    url, key, state = notify
    state.failures.arm(FailurePlan(count=1, mode="status", status=503))
    client = NotificationsAPIClient(key, base_url=url, timeout=5)
    with pytest.raises(HTTPError) as down:
        client.send_sms_notification("07700900123", ACK_SMS, {"reference": "x"})
    assert down.value.status_code == 503
    assert client.send_sms_notification("07700900123", ACK_SMS, {"reference": "x"})["id"]
