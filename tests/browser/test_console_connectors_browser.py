"""The console's connectors pages in Debian's chromium (the fixtures of test_console_browser.py):
pause and resume a connector, preview a mapping, a pasted mistake's error summary; axe-core finds
no WCAG 2.2 A/AA violation on any of them, and no Content-Security-Policy violation is reported.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.test_console_browser import SAMPLE, RunningHub, hub, page, sign_in, tab_to, violations

pytestmark = pytest.mark.browser
__all__ = ["hub", "page"]  # the fixtures, shared with the console's own browser test


def test_a_member_of_staff_pauses_and_resumes_a_connector_and_previews_a_mapping(hub: RunningHub, page: Any) -> None:
    # Westvale's own connector: staff of one council may pause only a connector serving it alone
    garden = hub.runtime.config.connectors["garden-waste"]
    hub.runtime.config.connectors["garden-waste"] = garden.model_copy(update={"tenants": ("westvale",)})
    sign_in(page, hub)
    page.get_by_role("link", name="Connectors").click()
    page.wait_for_url(f"{hub.url}/console/connectors")
    assert page.locator("h1").inner_text() == "Connectors"
    assert page.locator("tr[data-name='garden-waste'] [data-figure=paused]").inner_text() == "no"
    assert violations(page) == []

    page.get_by_role("link", name="garden-waste").click()
    page.wait_for_url(f"{hub.url}/console/connectors/garden-waste")
    assert violations(page) == []
    page.get_by_role("button", name="Pause garden-waste").click()
    page.wait_for_url("**/console/connectors/garden-waste?done=paused")
    assert "garden-waste is paused" in page.locator(".govuk-notification-banner").inner_text()
    assert page.locator("[data-figure=paused]").inner_text().startswith("paused at ")
    assert violations(page) == []
    page.get_by_role("button", name="Resume garden-waste").click()
    page.wait_for_url("**/console/connectors/garden-waste?done=resumed")
    assert page.locator("[data-figure=paused]").inner_text() == "no"
    assert violations(page) == []

    # a preview of the sample the hub's own samples hold, nothing sent
    page.select_option("#mapping", "missed-bin-collection")
    page.select_option("#sample", "general-uprn.json")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/console/connectors/garden-waste/preview*")
    body = json.loads(page.locator("#preview-body").inner_text())
    assert body["client_unique_identifier"] == "PREVIEW-0000000/garden-waste"
    assert "Bearer [secret]" in page.locator("#preview-headers").inner_text()
    assert violations(page) == []

    # pasted JSON with a mistake: the error summary links to the field
    page.select_option("#sample", "")
    page.fill("#payload", json.dumps(SAMPLE)[:-1])
    page.get_by_role("button", name="Preview").click()
    assert page.title().startswith("Error: ")
    summary = page.locator(".govuk-error-summary a[href='#payload']")
    assert "Pasted JSON is not valid JSON" in summary.inner_text()
    assert violations(page) == []
    assert page.csp_violations == [] and page.script_errors == []


def test_a_connector_is_paused_and_resumed_and_the_savings_page_read_by_keyboard_only(hub: RunningHub, page: Any) -> None:
    garden = hub.runtime.config.connectors["garden-waste"]
    hub.runtime.config.connectors["garden-waste"] = garden.model_copy(update={"tenants": ("westvale",)})
    sign_in(page, hub)
    tab_to(page, "document.activeElement.getAttribute('href') === '/console/connectors'")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/connectors")
    tab_to(page, "document.activeElement.getAttribute('href') === '/console/connectors/garden-waste'", presses=120)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/connectors/garden-waste")
    tab_to(page, "document.activeElement.textContent.includes('Pause garden-waste')", presses=120)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/connectors/garden-waste?done=paused")
    assert page.locator("[data-figure=paused]").inner_text().startswith("paused at ")
    tab_to(page, "document.activeElement.textContent.includes('Resume garden-waste')", presses=120)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/connectors/garden-waste?done=resumed")
    assert page.locator("[data-figure=paused]").inner_text() == "no"
    # on to the savings page, still without the mouse
    tab_to(page, "document.activeElement.getAttribute('href') === '/console/savings'", presses=120)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/savings")
    assert page.locator("h1").inner_text().startswith("Savings")
    assert "Socitm" in page.locator("main").inner_text()
    assert violations(page) == []
    assert page.csp_violations == [] and page.script_errors == []
