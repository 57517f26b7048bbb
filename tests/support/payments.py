"""A hub with the GOV.UK Pay and waste simulators beside it, for the payment tests: the embedded
hub (tests/support/embedded.py), or any database a test names (a real PostgreSQL one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from hub.api.server_thread import ServerThread
from simulators.pay import PayState
from simulators.pay import create_app as create_pay
from simulators.waste import WasteState
from simulators.waste import create_app as create_waste
from tests.support.embedded import EmbeddedHub, embedded_hub

PAY_KEY = "api_test_payments_tests_key_0123456789"
SAMPLE = {
    "name": {"first": "Eleri", "last": "Prys-Jones"}, "email": "eleri.prysjones@example.org", "phone": "07700 900245",
    "uprn": "100090215487", "bins": 2, "start_date": "2027-03-01", "renewal": False,
}


@dataclass
class PaidHub:
    hub: EmbeddedHub
    pay: PayState
    waste: WasteState
    pay_url: str

    def submit(self, **headers: str) -> httpx.Response:
        return self.hub.post("garden-waste-paid", SAMPLE, headers=headers)

    def resident_chooses(self, payment_id: str, action: str) -> httpx.Response:
        """The resident presses a button on GOV.UK Pay's page; Pay sends their browser back."""
        return httpx.post(f"{self.pay_url}/secure/{payment_id}/{action}", follow_redirects=False, timeout=10)

    def follow_return(self, response: httpx.Response) -> httpx.Response:
        """The resident's browser follows GOV.UK Pay's redirect to the hub's return URL."""
        return httpx.get(response.headers["location"], follow_redirects=False, timeout=10)

    def waste_requests(self) -> list[dict[str, Any]]:
        return self.waste.request_list()

    def wait_for(self, reference: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.hub.status(reference).json()
            if done(body):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{reference} did not get there in {timeout} s: {body}")
            time.sleep(0.05)


@contextmanager
def paid_hub(tmp_path: Path, expiry_seconds: float = 3600.0, database_url: str | None = None) -> Iterator[PaidHub]:
    waste = WasteState("hub", "waste-pw-for-tests")
    pay = PayState(PAY_KEY, expiry_seconds=expiry_seconds)
    waste_server, pay_server = ServerThread(create_waste(waste)).start(), ServerThread(create_pay(pay)).start()
    pay.base_url = pay_server.url
    try:
        env = {"WASTE_URL": waste_server.url, "WASTE_PASSWORD": "waste-pw-for-tests"}
        with embedded_hub(tmp_path, env=env, database_url=database_url) as hub:
            hub.runtime.settings.pay_url = pay_server.url
            hub.runtime.settings.pay_api_key = SecretStr(PAY_KEY)
            hub.runtime.settings.public_url = hub.url
            yield PaidHub(hub, pay, waste, pay_server.url)
    finally:
        waste_server.stop()
        pay_server.stop()
