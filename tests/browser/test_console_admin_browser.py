"""The console's admin pages in a real browser (Debian's chromium through Playwright, the hub on
uvicorn, signing in through the test OpenID Connect provider): rotate a client's key and see it
once, and axe-core finds no WCAG 2.2 A/AA violation on the clients, webhooks and audit pages, with
and without errors. The fixtures are test_console_browser.py's, taken by name.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hub.store import clients
from tests.browser import test_console_browser as shared
from tests.browser.test_console_browser import RunningHub, sign_in, tab_to, violations

pytestmark = pytest.mark.browser

hub = shared.hub
page = shared.page


def test_an_admin_rotates_a_key_sees_it_once_and_every_admin_page_passes_axe(hub: RunningHub, page: Any) -> None:
    _, old = clients.create(hub.runtime.engine, clients.NewClient("wv-browser-kiosk", "westvale", "Westvale kiosk"), "cli:test")
    sign_in(page, hub)
    page.get_by_role("link", name="Clients and keys").click()
    page.wait_for_url(f"{hub.url}/console/clients")
    assert page.locator("h1").inner_text() == "Clients and keys"
    row = page.locator("tr[data-client='wv-browser-kiosk']")
    assert row.locator("[data-key-prefix]").inner_text() == old[:8] + "…"
    assert violations(page) == []

    page.get_by_role("button", name="Rotate key of wv-browser-kiosk").click()
    page.wait_for_url(f"{hub.url}/console/clients/wv-browser-kiosk/rotate")
    key = page.locator("#new-key").input_value()
    assert key.startswith("cch_") and key != old and key not in page.url
    assert page.content().count(key) == 1 and "not shown again" in page.locator(".govuk-panel").inner_text()
    assert violations(page) == []

    page.get_by_role("link", name="Back to clients and keys").click()
    page.wait_for_url(f"{hub.url}/console/clients")
    assert key not in page.content()
    assert page.locator("tr[data-client='wv-browser-kiosk'] [data-key-prefix]").inner_text() == key[:8] + "…"
    assert "works until" in page.locator("tr[data-client='wv-browser-kiosk'] [data-previous]").inner_text()
    page.reload()
    assert key not in page.content()
    assert violations(page) == []

    # a client made with mistakes: the error summary and each field's message
    page.fill("#id", "Not An Id")
    page.fill("#expires_in_days", "soon")
    page.get_by_role("button", name="Make client").click()
    assert page.locator(".govuk-error-summary").is_visible() and page.title().startswith("Error: ")
    assert violations(page) == []

    page.get_by_role("link", name="Webhooks").click()
    page.wait_for_url(f"{hub.url}/console/webhooks")
    assert violations(page) == []
    page.select_option("#client_id", "wv-browser-kiosk")
    page.fill("#url", "ftp://nowhere")
    page.get_by_role("button", name="Make webhook").click()
    assert "Enter the URL as http:// or https://" in page.locator(".govuk-error-summary").inner_text()
    assert violations(page) == []
    page.fill("#url", "http://127.0.0.1:9/wv-browser-hook")
    page.get_by_role("button", name="Make webhook").click()
    secret = page.locator("#new-secret").input_value()
    assert secret.startswith("whsec_")
    assert violations(page) == []
    page.get_by_role("link", name="Back to webhooks").click()
    assert secret not in page.content() and "wv-browser-hook" in page.content()
    assert violations(page) == []

    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"{hub.url}/console/audit")
    assert "client.rotate" in page.locator("#audit-entries").inner_text()
    assert violations(page) == []
    page.fill("#action", "client.rotate")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/audit?*action=client.rotate*")
    assert page.locator("#audit-entries tbody tr").count() == 1
    assert violations(page) == []
    page.goto(f"{hub.url}/console/audit?from=last+week")
    assert page.locator(".govuk-error-summary").is_visible()
    assert violations(page) == []
    assert page.csp_violations == []
    assert page.script_errors == []


def test_a_key_is_rotated_by_keyboard_only(hub: RunningHub, page: Any) -> None:
    _, old = clients.create(hub.runtime.engine, clients.NewClient("wv-keyboard-app", "westvale"), "cli:test")
    sign_in(page, hub)
    tab_to(page, "document.activeElement.getAttribute('href') === '/console/clients'")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/clients")
    tab_to(page, "document.activeElement.id === 'grace-wv-keyboard-app'", presses=120)
    page.keyboard.press("Control+A")
    page.keyboard.type("1")
    tab_to(page, "document.activeElement.textContent.includes('Rotate key of wv-keyboard-app')")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub.url}/console/clients/wv-keyboard-app/rotate")
    key = page.locator("#new-key").input_value()
    assert key.startswith("cch_") and key != old
    stored = clients.get(hub.runtime.engine, "wv-keyboard-app")
    assert stored is not None and stored.previous_key_expires_at is not None and stored.rotated_at is not None
    assert stored.previous_key_expires_at - stored.rotated_at == timedelta(hours=1)
