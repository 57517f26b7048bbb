"""The console's Savings page in a real browser (Debian's chromium through Playwright, the hub on
uvicorn, signing in through the test OpenID Connect provider): the figures of what was delivered,
the chart and table, the filter's errors, axe-core's zero WCAG 2.2 A/AA violations, and the
screenshot in docs/images/console-savings.png. The fixtures are test_console_browser.py's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.store.deliveries import record_delivered
from tests.browser import test_console_browser as shared
from tests.browser.test_console_browser import RunningHub, delivery_of, seed, sign_in, violations

pytestmark = pytest.mark.browser

hub = shared.hub
page = shared.page
SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "console-savings.png"


def test_the_savings_page_shows_what_went_straight_in_and_passes_axe(hub: RunningHub, page: Any) -> None:
    made = seed(hub, 3)
    for reference in made:
        record_delivered(hub.runtime.engine, delivery_of(hub, reference), datetime.now(UTC), None)
    sign_in(page, hub)
    page.get_by_role("link", name="Savings").click()
    page.wait_for_url(f"{hub.url}/console/savings")
    assert page.locator("h1").inner_text() == "Savings"
    month = datetime.now(UTC).strftime("%Y-%m")
    row = page.locator("#savings tbody tr").filter(has_text=month)
    assert row.locator("td").nth(3).inner_text() == str(len(made))
    assert page.get_by_role("img", name="Money saved per tenant, form and month").is_visible()
    assert "Socitm Insight" in page.locator("#unit-costs").inner_text()
    assert violations(page) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.fill("#from", "March")
    page.get_by_role("button", name="Show savings").click()
    assert page.locator(".govuk-error-summary").is_visible()
    assert "Month from must be a month" in page.locator(".govuk-error-summary").inner_text()
    assert violations(page) == []
    assert page.csp_violations == [] and page.script_errors == []
