"""The staff console in a real browser: Debian's chromium driven by Playwright against the hub on a
real uvicorn server, signing in through the test OpenID Connect provider, the dashboard, a search by
keyboard only, a submission; axe-core finds no WCAG 2.2 A/AA violation on any page, and the
browser reports no Content-Security-Policy violation (no inline script anywhere).

Chromium treats http://localhost as a secure context, so the `__Host-` (Secure) cookie works there.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from hub.runtime import Runtime
from hub.store.deliveries import record_delivered, record_parked
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, submissions
from tests.support.oidc import Issuer, oidc_issuer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "axe" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip("Debian's chromium is not installed (make servers installs it; in CI this fails)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api") if os.environ.get("CI") != "true" else __import__("playwright.sync_api").sync_api


@dataclass
class RunningHub:
    url: str
    runtime: Runtime
    issuer: Issuer
    key: str


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    tmp = tmp_path_factory.mktemp("console-browser")
    with oidc_issuer() as issuer:
        key = "wv-key-" + secrets.token_hex(8)
        env = {"WESTVALE_API_KEY": key, "HUB_DEMO_API_KEY": "em-" + secrets.token_hex(8),
               "CRM_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t", "GARDEN_WASTE_URL": "http://127.0.0.1:9", "GARDEN_WASTE_API_TOKEN": "t"}
        settings = Settings(database_url=f"sqlite:///{tmp / 'hub.db'}", broker_url="memory://", staff_auth="both",
                            oidc_issuer=issuer.url, session_key=SecretStr(secrets.token_hex(32)))
        runtime = Runtime.build(settings, env)
        upgrade(runtime.engine)
        server = ServerThread(create_app(runtime))
        # localhost, not 127.0.0.1: the name a browser treats as a secure context for Secure cookies
        url = f"http://localhost:{server.port}"
        client_id, client_secret = issuer.register_client(f"{url}/console/callback")
        runtime.settings = settings.model_copy(update={"public_url": url, "oidc_client_id": client_id, "oidc_client_secret": SecretStr(client_secret)})
        server.start()
        issuer.add_person("wv-7d1c2a", name="Wendy Vale", email="wendy@westvale.example", email_verified=True)
        try:
            yield RunningHub(url, runtime, issuer, key)
        finally:
            server.stop()
            runtime.close()


def seed(hub: RunningHub, count: int) -> list[str]:
    made = []
    for _ in range(count):
        answer = httpx.post(f"{hub.url}/v1/forms/missed-bin-collection/submissions", json=SAMPLE,
                            headers={"Authorization": f"Bearer {hub.key}"}, timeout=10)
        assert answer.status_code == 202, answer.text
        made.append(answer.json()["reference"])
    return made


def delivery_of(hub: RunningHub, reference: str) -> int:
    with hub.runtime.engine.connect() as conn:
        return int(conn.execute(select(deliveries.c.id).join(submissions, submissions.c.id == deliveries.c.submission_id)
                                .where(submissions.c.reference == reference)).scalar_one())


@pytest.fixture()
def page(hub: RunningHub) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            opened = browser.new_page()
            opened.csp_violations = []  # type: ignore[attr-defined]
            opened.on("console", lambda m: opened.csp_violations.append(m.text) if "Content Security Policy" in m.text else None)  # type: ignore[attr-defined]
            opened.script_errors = []  # type: ignore[attr-defined]
            opened.on("pageerror", lambda error: opened.script_errors.append(str(error)))  # type: ignore[attr-defined]
            yield opened
        finally:
            browser.close()


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.2 A/AA violations on the page as it is now (injected over the DevTools
    protocol: the page's own CSP would refuse it as a script tag, as it should)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {runOnly: {type: "tag", values: tags}});
            return {passes: r.passes.length, violations: r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(" "))}))};
        }""",
        WCAG,
    )
    assert result["passes"] > 5, f"axe checked almost nothing on {page.url}: {result}"
    found: list[dict[str, Any]] = result["violations"]
    return found


def tab_to(page: Any, reached: str, presses: int = 60) -> None:
    """Presses Tab until the JavaScript condition `reached` holds on the focused element."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => Boolean(document.activeElement) && {reached}"):
            return
    raise AssertionError(f"not reached with Tab: {reached}")


def sign_in(page: Any, hub: RunningHub) -> None:
    page.goto(f"{hub.url}/console")
    # the test provider's own sign-in form
    page.fill("input[name=sub]", "wv-7d1c2a")
    page.locator("form:has(input[name=sub]) [type=submit]").first.click()
    page.wait_for_url(f"{hub.url}/console")


def test_a_member_of_staff_signs_in_sees_the_dashboard_finds_a_submission_by_keyboard_and_opens_it(hub: RunningHub, page: Any) -> None:
    made = seed(hub, 3)
    delivered, parked = delivery_of(hub, made[0]), delivery_of(hub, made[1])
    record_delivered(hub.runtime.engine, delivered, datetime.now(UTC), "CRM-CASE-9")
    record_parked(hub.runtime.engine, parked, datetime.now(UTC), "CRM said 400", "parked")

    sign_in(page, hub)
    assert page.locator("h1").inner_text() == "Dashboard"
    assert "Westvale digital services administrator" in page.locator("#signed-in-as").inner_text()
    assert page.evaluate("() => document.body.classList.contains('js-enabled')"), "console.js did not run"
    received = page.locator("#forms-1 tr[data-name='missed-bin-collection'] [data-figure=received]").inner_text()
    assert received == str(len(made))
    assert violations(page) == []

    page.goto(f"{hub.url}/console/submissions")
    assert violations(page) == []
    # keyboard only: tab to the reference box, type, Enter
    tab_to(page, "document.activeElement.id === 'reference'")
    page.keyboard.type(made[1])
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/submissions?*reference={made[1]}*")
    assert page.locator("#results").inner_text() == "1 submission found"
    assert violations(page) == []
    tab_to(page, f"document.activeElement.getAttribute('href') === '/console/submissions/{made[1]}'")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/submissions/{made[1]}")
    assert page.locator("h1").inner_text() == f"Submission {made[1]}"
    assert SAMPLE["email"] not in page.content() and "parked" in page.locator("#deliveries").inner_text()
    assert violations(page) == []

    # replay the parked delivery (admin includes operator), then see it queued again
    page.get_by_role("button", name="Replay delivery to crm").click()
    page.wait_for_url(f"**/console/submissions/{made[1]}?replayed={parked}")
    assert "is queued again" in page.locator(".govuk-notification-banner").inner_text()
    assert violations(page) == []

    parked_again = seed(hub, 1)[0]
    record_parked(hub.runtime.engine, delivery_of(hub, parked_again), datetime.now(UTC), "CRM said 400", "parked")
    page.get_by_role("link", name="Parked deliveries").click()
    assert page.locator("#parked-count").inner_text() == "1 parked delivery"
    assert violations(page) == []
    page.get_by_role("button", name=f"Replay {parked_again} to crm").click()
    page.wait_for_url("**/console/deliveries?replayed=*")
    assert page.locator("#parked-count").inner_text() == "0 parked deliveries"
    assert violations(page) == []

    # a search with mistakes: the error summary, each field's message
    page.goto(f"{hub.url}/console/submissions?from=last+tuesday&state=lost")
    assert page.locator(".govuk-error-summary").is_visible() and page.title().startswith("Error: ")
    assert violations(page) == []

    page.goto(f"{hub.url}/console/submissions/WBC-NOSUCHREF")
    assert page.locator("h1").inner_text() == "Submission not found"
    assert violations(page) == []

    page.get_by_role("button", name="Sign out").click()
    assert page.locator("h1").inner_text() == "You have signed out"
    assert violations(page) == []
    page.goto(f"{hub.url}/console")
    assert page.url.startswith(hub.issuer.url), "signed out, /console must send the browser to sign in again"
    assert page.csp_violations == []
    assert page.script_errors == [], "console.js or GOV.UK Frontend failed in the browser"
