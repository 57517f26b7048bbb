"""Payment before delivery on the real processes (PostgreSQL, RabbitMQ, `hub api`, `hub worker`
with its background jobs) and the GOV.UK Pay and waste simulators over real HTTP: a paid garden
waste subscription reaches the waste back office only once paid; an abandoned payment expires
and cancels the submission; reconcile settles a payment whose return was lost; a GOV.UK Pay
outage loses nothing."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as StandardWebhook

from hub.api.server_thread import ServerThread
from simulators.crm import FailurePlan
from simulators.pay import PayState
from simulators.pay import create_app as create_pay
from simulators.waste import WasteState
from simulators.waste import create_app as create_waste
from tests.e2e.test_status_and_webhooks import allow_loopback_webhooks
from tests.support.payments import PAY_KEY, SAMPLE
from tests.support.processes import REPO, HubProcesses, from_checkout
from tests.support.servers import free_port
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e


class Offices:
    def __init__(self, expiry_seconds: float) -> None:
        self.waste = WasteState("hub", "waste-e2e-pw")
        self.pay = PayState(PAY_KEY, expiry_seconds=expiry_seconds)
        self.servers = [ServerThread(create_waste(self.waste)).start(), ServerThread(create_pay(self.pay)).start()]
        self.pay.base_url = self.pay_url = self.servers[1].url

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def wire(stack: HubProcesses, offices: Offices, **env: str) -> str:
    """The stack's settings for the simulators (the API key as a secret file); starts `hub api`."""
    key_file = stack.workdir / "pay_api_key"
    key_file.write_text(PAY_KEY + "\n")
    port = free_port()
    stack.env.update({
        "WASTE_URL": offices.servers[0].url, "WASTE_PASSWORD": "waste-e2e-pw",
        "HUB_PAY_URL": offices.pay_url, "HUB_PAY_API_KEY_FILE": str(key_file), "HUB_PAY_POLL_SECONDS": "0.5",
        "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}", **env,
    })
    return stack.start_api(port=port)


@pytest.fixture()
def offices(request: pytest.FixtureRequest) -> Iterator[Offices]:
    running = Offices(getattr(request, "param", 3600.0))
    yield running
    running.stop()


def until(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def status(client: httpx.Client, reference: str) -> dict[str, Any]:
    return client.get(f"/v1/submissions/{reference}").json()  # type: ignore[no-any-return]


def test_a_paid_garden_waste_subscription_is_delivered_once_paid_and_the_portal_hears_of_it(
        stack: HubProcesses, offices: Offices) -> None:
    receiver = Receiver().start()
    try:
        allow_loopback_webhooks(stack)
        wire(stack, offices)
        stack.start_worker()
        with stack.client() as client:
            hook = client.post("/v1/webhooks", json={"url": receiver.url})
            assert hook.status_code == 201, hook.text
            answer = client.post("/v1/forms/garden-waste-paid/submissions", json=SAMPLE)
            assert answer.status_code == 202, answer.text
            receipt = answer.json()
            assert receipt["status"] == "awaiting_payment"
            time.sleep(1.5)  # the worker is running: still nothing may reach the back office
            assert offices.waste.request_list() == []
            assert status(client, receipt["reference"])["deliveries"][0]["state"] == "held"
            # the resident pays on GOV.UK Pay's page and comes back through the hub's return URL
            with httpx.Client(timeout=10, follow_redirects=False) as browser:
                back = browser.post(f"{receipt['payment']['next_url']}/complete")
                portal = browser.get(back.headers["location"])
            assert portal.status_code == 303 and receipt["reference"] in portal.headers["location"]
            [delivered] = stack.wait_settled([receipt["reference"]])[receipt["reference"]]["deliveries"]
            assert delivered["state"] == "delivered"
            assert len(offices.waste.request_list()) == 1
            seen = [StandardWebhook(hook.json()["secret"]).verify(r.body, r.headers) for r in until(
                lambda: [r for r in receiver.accepted() if b"payment_success" in r.body] and receiver.accepted(),
                what="the payment_success webhook")]
            payment_events = [e["data"] for e in seen if e["type"] == "submission.status_changed" and e["data"]["connector"] == "pay"]
            assert [(e["reference"], e["status"]) for e in payment_events][-1] == (receipt["reference"], "payment_success")
    finally:
        receiver.stop()
    assert PAY_KEY not in stack.all_logs()


@pytest.mark.parametrize("offices", [1.0], indirect=True)
def test_an_abandoned_payment_expires_and_the_submission_is_cancelled_with_nothing_delivered(
        stack: HubProcesses, offices: Offices) -> None:
    wire(stack, offices)
    stack.start_worker()
    with stack.client() as client:
        reference = client.post("/v1/forms/garden-waste-paid/submissions", json=SAMPLE).json()["reference"]
        # nobody pays: the worker's payments job finds GOV.UK Pay's payment expired
        cancelled = until(lambda: (s := status(client, reference))["status"] == "cancelled" and s, what="cancelled")
    assert cancelled["deliveries"][0]["state"] == "cancelled"
    assert [e["status"] for e in cancelled["timeline"] if e["event"] == "status"][-1] == "payment_expired"
    assert offices.waste.request_list() == []


def test_reconcile_settles_a_payment_whose_return_was_lost(stack: HubProcesses, offices: Offices) -> None:
    wire(stack, offices)
    # no background jobs: only reconcile may learn of the payment
    stack.start_worker("worker", "--no-background")
    with stack.client() as client:
        receipt = client.post("/v1/forms/garden-waste-paid/submissions", json=SAMPLE).json()
        # paid, but the resident closed the browser before coming back
        httpx.post(f"{offices.pay_url}/_control/payments/{receipt['payment']['payment_id']}/complete", timeout=10)
        time.sleep(1.0)
        assert status(client, receipt["reference"])["status"] == "awaiting_payment"
        done = subprocess.run([*from_checkout("reconcile"), "payments", "reconcile"], cwd=REPO, env=stack.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{receipt['reference']}" in done.stdout and "success" in done.stdout
        assert PAY_KEY not in done.stdout + done.stderr
        [delivered] = stack.wait_settled([receipt["reference"]])[receipt["reference"]]["deliveries"]
    assert delivered["state"] == "delivered" and len(offices.waste.request_list()) == 1


def test_a_payment_service_outage_never_loses_the_submission(stack: HubProcesses, offices: Offices) -> None:
    wire(stack, offices)
    offices.pay.failures.arm(FailurePlan(count=1, status=503))
    with stack.client() as client:
        answer = client.post("/v1/forms/garden-waste-paid/submissions", json=SAMPLE)
        assert answer.status_code == 202
        receipt = answer.json()
        assert receipt["status"] == "payment_unavailable" and receipt["payment"]["next_url"] is None
        # the worker's job creates the payment once GOV.UK Pay answers again
        stack.start_worker()
        shown = until(lambda: (s := status(client, receipt["reference"]))["payment"]["next_url"] and s, what="a next_url")
        assert shown["status"] == "awaiting_payment"
        httpx.post(f"{shown['payment']['next_url']}/complete", timeout=10)
        [delivered] = stack.wait_settled([receipt["reference"]])[receipt["reference"]]["deliveries"]
    assert delivered["state"] == "delivered" and len(offices.waste.request_list()) == 1
