"""Edit then replay in a real browser: Debian's chromium driven by Playwright against the embedded
hub (worker, relay, the CRM simulator on loopback), signing in through the test OpenID Connect
provider. A parked delivery is found, a field corrected, the diff and the body seen, the delivery
replayed and seen delivered; then the same journey by keyboard only. axe-core finds no WCAG 2.2
A/AA violation on any of the pages, and the browser reports no CSP violation.
"""

# ruff: noqa: F811 - the `page` fixture is test_console_browser's, imported, and named by each test
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from simulators.crm import FailurePlan
from tests.browser.test_console_browser import SAMPLE, RunningHub, page, sign_in, tab_to, violations  # noqa: F401 - page is a fixture
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.oidc import oidc_issuer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningHub, EmbeddedHub]]:
    with oidc_issuer() as issuer, embedded_hub(tmp_path_factory.mktemp("console-fix")) as embedded:
        # localhost, not 127.0.0.1: the name a browser treats as a secure context for Secure cookies
        url = embedded.url.replace("127.0.0.1", "localhost")
        client_id, client_secret = issuer.register_client(f"{url}/console/callback")
        embedded.runtime.settings = embedded.runtime.settings.model_copy(update={
            "staff_auth": "both", "oidc_issuer": issuer.url, "oidc_client_id": client_id,
            "oidc_client_secret": SecretStr(client_secret), "session_key": SecretStr(secrets.token_hex(32)), "public_url": url,
        })
        issuer.add_person("wv-7d1c2a", name="Wendy Vale", email="wendy@westvale.example", email_verified=True)
        yield RunningHub(url, embedded.runtime, issuer, embedded.westvale_key), embedded


def parked(embedded: EmbeddedHub, notes: str) -> str:
    """A Westvale submission the CRM refused for good (HTTP 400): parked at once."""
    embedded.crm.arm(FailurePlan(count=1, mode="status", status=400))
    reference = str(embedded.post("missed-bin-collection", {**SAMPLE, "notes": notes}, key=embedded.westvale_key).json()["reference"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = embedded.status(reference, key=embedded.westvale_key).json()
        if body["deliveries"] and body["deliveries"][0]["state"] == "parked":
            embedded.crm.arm(FailurePlan(count=0))
            return reference
        time.sleep(0.05)
    raise AssertionError(f"{reference} did not park")


def delivered(page: Any, reference: str) -> None:
    """Reloads the submission's page (no JavaScript needed) until its delivery shows delivered."""
    deadline = time.monotonic() + 15
    while "delivered" not in page.locator("#deliveries").inner_text():
        assert time.monotonic() < deadline, f"{reference} not delivered: {page.locator('#deliveries').inner_text()}"
        time.sleep(0.2)
        page.reload()


def case_for(embedded: EmbeddedHub, reference: str) -> dict[str, Any]:
    [case] = [c for c in embedded.crm.cases() if c["record"]["data"][0]["source_ref"] == reference]
    return dict(case["record"])


def test_a_member_of_staff_finds_a_parked_delivery_corrects_a_field_sees_the_diff_and_replays_it(
    hub: tuple[RunningHub, EmbeddedHub], page: Any
) -> None:
    running, embedded = hub
    reference = parked(embedded, "Bin out by 7am")
    sign_in(page, running)
    page.get_by_role("link", name="Parked deliveries").click()
    assert violations(page) == []
    page.get_by_role("link", name=f"Edit {reference} to crm").click()
    assert page.locator("h1").inner_text() == "Correct the answers, then replay"
    assert violations(page) == []

    # a mistake first: no reason, a UPRN of letters
    uprn = page.get_by_label("Address of the property: Unique Property Reference Number (UPRN)")
    uprn.fill("not a uprn")
    page.get_by_role("button", name="Preview the correction").click()
    assert page.locator(".govuk-error-summary").is_visible() and page.title().startswith("Error: ")
    assert "Enter the reason for this correction" in page.locator(".govuk-error-summary").inner_text()
    assert violations(page) == []

    uprn.fill("100023336957")
    page.get_by_label("Reason for the correction").fill("The CRM refused the UPRN: the neighbouring property was picked")
    page.get_by_role("button", name="Preview the correction").click()
    assert page.locator("h1").inner_text() == "Check the correction before you replay"
    row = page.locator("#diff tr[data-pointer='/address/uprn']")
    assert row.locator("[data-side=before]").inner_text() == "100023336956" and row.locator("[data-side=after]").inner_text() == "100023336957"
    body = json.loads(page.locator("#body").input_value())
    assert body["data"][0]["case_uprn"] == "100023336957"
    assert violations(page) == []

    page.get_by_role("button", name="Save the correction and replay").click()
    page.wait_for_url(f"**/console/submissions/{reference}?replayed=*")
    assert "is queued again" in page.locator(".govuk-notification-banner").inner_text()
    delivered(page, reference)
    assert violations(page) == []
    assert case_for(embedded, reference) == body
    assert page.csp_violations == [] and page.script_errors == []


def test_the_same_journey_by_keyboard_only(hub: tuple[RunningHub, EmbeddedHub], page: Any) -> None:
    running, embedded = hub
    reference = parked(embedded, "Left by the gate")
    sign_in(page, running)
    tab_to(page, "document.activeElement.getAttribute('href') === '/console/deliveries'")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/deliveries")
    tab_to(page, f"document.activeElement.textContent.includes('Edit {reference} to crm')", presses=200)
    page.keyboard.press("Enter")
    page.wait_for_url("**/edit")
    assert violations(page) == []
    tab_to(page, "document.activeElement.name === 'answer:/notes'", presses=100)
    page.keyboard.press("Control+A")
    page.keyboard.type("Left by the side gate")
    tab_to(page, "document.activeElement.id === 'reason'")
    page.keyboard.type("The resident called to say where the bin is")
    tab_to(page, "document.activeElement.textContent.trim() === 'Preview the correction'")
    page.keyboard.press("Enter")
    page.wait_for_selector("#diff")
    assert page.locator("#diff tr[data-pointer='/notes'] [data-side=after]").inner_text() == "Left by the side gate"
    assert violations(page) == []
    tab_to(page, "document.activeElement.textContent.trim() === 'Save the correction and replay'", presses=100)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/submissions/{reference}?replayed=*")
    delivered(page, reference)
    assert "Left by the side gate" in case_for(embedded, reference)["data"][0]["details"]
    assert page.csp_violations == [] and page.script_errors == []


def test_the_filter_errors_and_the_dry_run_pages_have_no_accessibility_violations(hub: tuple[RunningHub, EmbeddedHub], page: Any) -> None:
    running, embedded = hub
    reference = parked(embedded, "For the dry run")
    sign_in(page, running)
    page.goto(f"{running.url}/console/deliveries?state=lost&from=last+tuesday")
    assert page.locator(".govuk-error-summary").is_visible()
    assert violations(page) == []
    page.goto(f"{running.url}/console/deliveries?state=failed")
    assert violations(page) == []
    page.goto(f"{running.url}/console/deliveries")
    page.get_by_label(f"Select {reference} to crm").check()
    page.get_by_role("button", name="Dry run").click()
    assert page.locator("h1").inner_text() == "Dry run: nothing has been replayed"
    assert reference in page.locator("#replayed").inner_text()
    assert violations(page) == []
    page.get_by_role("button", name="Replay this delivery").click()
    assert "1 delivery replayed." in page.locator("#summary").inner_text()
    assert violations(page) == []


