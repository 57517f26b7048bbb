"""The staff console over https://testserver: signing in through a real OpenID Connect issuer on
loopback to a `__Host-` cookie session, its idle and absolute timeouts, CSRF, the security
headers, roles and tenants, and the dashboard's figures against submissions seeded through intake.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from hub.api.app import create_app
from hub.auth import sessions
from hub.config.settings import Settings
from hub.console.web import COOKIE, CSP
from hub.runtime import Runtime
from hub.store import audit
from hub.store.deliveries import record_delivered, record_parked, record_retry
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, submissions
from tests.support.oidc import Issuer, oidc_issuer, provider_form

BASE = "https://testserver"
SAMPLES = Settings().schemas_dir / "missed-bin-collection" / "samples"
GENERAL = json.loads((SAMPLES / "general-uprn.json").read_text())
GARDEN = json.loads((SAMPLES / "garden-uprn.json").read_text())


@dataclass
class Console:
    runtime: Runtime
    app: Any
    issuer: Issuer
    secret: bytes
    keys: dict[str, str]

    def browser(self) -> TestClient:
        return TestClient(self.app, base_url=BASE, follow_redirects=False)

    def signed_in_as(self, staff_id: str) -> TestClient:
        """A browser holding a console session issued directly (the sign-in itself is tested below)."""
        browser = self.browser()
        s = self.runtime.settings
        session = sessions.issue_console(staff_id, self.secret, s.console_idle_minutes * 60, s.console_absolute_hours * 3600)
        browser.cookies.set(COOKIE, session.token, domain="testserver.local", path="/")
        return browser

    def submit(self, tenant: str, payload: Any) -> str:
        with TestClient(self.app, base_url=BASE) as front_end:
            answer = front_end.post("/v1/forms/missed-bin-collection/submissions", json=payload,
                                    headers={"Authorization": f"Bearer {self.keys[tenant]}"})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["reference"])

    def delivery_ids(self, reference: str) -> dict[str, int]:
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.connector, deliveries.c.id).join(submissions, submissions.c.id == deliveries.c.submission_id)
                .where(submissions.c.reference == reference)
            ).all()
        return {connector: delivery_id for connector, delivery_id in rows}

    def state(self, delivery_id: int) -> str:
        with self.runtime.engine.connect() as conn:
            return str(conn.execute(select(deliveries.c.state).where(deliveries.c.id == delivery_id)).scalar_one())


@pytest.fixture()
def console(tmp_path: Path) -> Iterator[Console]:
    with oidc_issuer() as issuer:
        secret = secrets.token_hex(32)
        keys = {"eastmoor": "em-key-" + secrets.token_hex(8), "westvale": "wv-key-" + secrets.token_hex(8)}
        client_id, client_secret = issuer.register_client(f"{BASE}/console/callback")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'hub.db'}",
            broker_url="memory://",
            staff_auth="both",
            oidc_issuer=issuer.url,
            oidc_client_id=client_id,
            oidc_client_secret=SecretStr(client_secret),
            session_key=SecretStr(secret),
            public_url=BASE,
        )
        env = {"HUB_DEMO_API_KEY": keys["eastmoor"], "WESTVALE_API_KEY": keys["westvale"],
               "CRM_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t", "GARDEN_WASTE_URL": "http://127.0.0.1:9", "GARDEN_WASTE_API_TOKEN": "t"}
        runtime = Runtime.build(settings, env)
        upgrade(runtime.engine)
        try:
            yield Console(runtime, create_app(runtime), issuer, secret.encode(), keys)
        finally:
            runtime.close()


def through_the_provider(console: Console, browser: TestClient, subject: str) -> httpx.Response:
    """What a browser does from /console with no session: to sign-in, to the provider, back."""
    start = browser.get("/console")
    assert start.status_code == 303 and start.headers["location"] == "/console/sign-in"
    to_provider = browser.get(start.headers["location"])
    assert to_provider.status_code == 302 and to_provider.headers["location"].startswith(console.issuer.url)
    with httpx.Client(timeout=10) as outside:
        page = outside.get(to_provider.headers["location"])
        form = provider_form(page)
        back = outside.post(str(page.url.join(form["action"])) if form["action"] else str(page.url), data={"sub": subject})
    assert back.status_code == 302 and back.headers["location"].startswith(f"{BASE}/console/callback?")
    return browser.get(back.headers["location"])


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token in the page's forms"
    return found.group(1)


def figure_rows(page: str, table: str) -> dict[str, dict[str, str]]:
    """A dashboard table as {row name: {figure: text}}."""
    body = re.search(rf'<table class="govuk-table" id="{table}">(.*?)</table>', page, re.S)
    assert body, f"no table {table}"
    rows = {}
    for name, cells in re.findall(r'<tr class="govuk-table__row" data-name="([^"]+)">(.*?)</tr>', body.group(1), re.S):
        rows[name] = {k: unescape(v.strip()) for k, v in re.findall(r'data-figure="(\w+)">(.*?)</td>', cells, re.S)}
    return rows


def test_a_browser_without_a_session_is_sent_to_sign_in_and_comes_back_with_a_host_cookie(console: Console) -> None:
    console.issuer.add_person("wv-7d1c2a", name="Wendy Vale", email="wendy@westvale.example", email_verified=True)
    browser = console.browser()
    back = through_the_provider(console, browser, "wv-7d1c2a")
    assert back.status_code == 303 and back.headers["location"] == "/console"
    cookie = next(v for k, v in back.headers.multi_items() if k == "set-cookie" and v.startswith(f"{COOKIE}="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= attributes and "domain" not in attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower() and "path=/c" not in cookie.lower()
    dashboard = browser.get("/console")
    assert dashboard.status_code == 200, dashboard.text
    assert "Westvale digital services administrator (demo)" in dashboard.text and "westvale" in dashboard.text
    assert "Sign out" in dashboard.text
    [entry] = audit.entries(console.runtime.engine, audit.AuditFilter(action="staff.sign_in"))
    assert entry["actor"] == "staff:westvale-admin" and entry["detail"]["via"] == "console"


def test_a_person_not_on_the_staff_list_is_refused_with_a_page(console: Console) -> None:
    console.issuer.add_person("stranger-42", email="stranger@example.org", email_verified=True)
    refused = through_the_provider(console, console.browser(), "stranger-42")
    assert refused.status_code == 403 and "not on this hub's staff list" in unescape(refused.text)
    assert COOKIE not in refused.headers.get("set-cookie", "")


def test_signing_out_clears_the_cookie_and_the_session_is_gone(console: Console) -> None:
    browser = console.signed_in_as("westvale-viewer")
    dashboard = browser.get("/console")
    out = browser.post("/console/sign-out", data={"csrf_token": csrf(dashboard)})
    assert out.status_code == 200 and "You have signed out" in out.text
    assert f'{COOKIE}=""' in out.headers["set-cookie"] or "max-age=0" in out.headers["set-cookie"].lower()
    assert browser.get("/console").headers["location"] == "/console/sign-in"


def test_the_session_ends_after_the_idle_timeout_and_at_the_absolute_timeout(console: Console) -> None:
    idle = timedelta(minutes=console.runtime.settings.console_idle_minutes)
    absolute = timedelta(hours=console.runtime.settings.console_absolute_hours)
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        browser = console.signed_in_as("westvale-viewer")
        clock.shift(idle - timedelta(minutes=1))
        assert browser.get("/console").status_code == 200
        # each request starts the idle time again
        clock.shift(idle - timedelta(minutes=1))
        assert browser.get("/console").status_code == 200
        clock.shift(idle + timedelta(seconds=1))
        assert browser.get("/console").headers["location"] == "/console/sign-in"

        busy = console.signed_in_as("westvale-viewer")
        spent = timedelta()
        while spent + idle / 2 < absolute:
            clock.shift(idle / 2)
            spent += idle / 2
            assert busy.get("/console").status_code == 200, f"signed out after {spent}"
        clock.shift(absolute - spent + timedelta(seconds=1))
        assert busy.get("/console").headers["location"] == "/console/sign-in"


def test_a_post_without_the_csrf_token_or_with_another_sessions_is_refused_with_403(console: Console) -> None:
    reference = console.submit("westvale", GENERAL)
    browser = console.signed_in_as("westvale-caseworker")
    assert browser.post(f"/console/submissions/{reference}/reveal").status_code == 403
    other = csrf(console.signed_in_as("westvale-caseworker").get("/console"))
    refused = browser.post(f"/console/submissions/{reference}/reveal", data={"csrf_token": other})
    assert refused.status_code == 403 and "security token" in refused.text
    assert browser.post("/console/sign-out", data={}).status_code == 403
    assert browser.get("/console").status_code == 200, "a refused form must not end the session"


def test_every_console_response_carries_the_csp_and_pages_are_not_stored(console: Console) -> None:
    reference = console.submit("westvale", GENERAL)
    browser = console.signed_in_as("westvale-admin")
    answers = [browser.get(path) for path in ("/console", "/console/submissions", f"/console/submissions/{reference}",
                                              "/console/submissions/WBC-NOSUCH", "/console/static/console.js")]
    answers += [console.browser().get("/console"), console.browser().get("/console/sign-in")]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP, answer.request.url
        assert "'unsafe-inline'" not in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["referrer-policy"] == "no-referrer"
    for answer in answers[:4]:
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert "<script>" not in answer.text and 'type="module" src="/console/static/console.js"' in answer.text
    assert "initAll" in answers[4].text


def test_another_councils_reference_is_not_found_on_every_page_and_action(console: Console) -> None:
    theirs = console.submit("eastmoor", GENERAL)
    [parked] = console.delivery_ids(theirs).values()
    record_parked(console.runtime.engine, parked, datetime.now(UTC), "CRM said 400", "parked")
    browser = console.signed_in_as("westvale-admin")
    token = csrf(browser.get("/console"))
    assert browser.get(f"/console/submissions/{theirs}").status_code == 404
    assert browser.post(f"/console/submissions/{theirs}/reveal", data={"csrf_token": token}).status_code == 404
    assert browser.post(f"/console/deliveries/{parked}/replay", data={"csrf_token": token}).status_code == 404
    found = browser.get("/console/submissions", params={"reference": theirs})
    assert found.status_code == 200 and "0 submissions found" in found.text and f'href="/console/submissions/{theirs}"' not in found.text
    assert console.state(parked) == "parked"
    # a platform operator sees every council
    everyone = console.signed_in_as("ict-operator")
    assert everyone.get(f"/console/submissions/{theirs}").status_code == 200


def test_a_viewer_cannot_replay_and_an_operator_of_the_council_can(console: Console) -> None:
    reference = console.submit("eastmoor", GENERAL)
    [parked] = console.delivery_ids(reference).values()
    record_parked(console.runtime.engine, parked, datetime.now(UTC), "CRM said 400", "parked")
    operator = console.signed_in_as("eastmoor-operator")
    page = operator.get(f"/console/submissions/{reference}")
    assert f'action="/console/deliveries/{parked}/replay"' in page.text
    # a viewer of the same council: no button, and the action itself refused on the server
    console.runtime.config.staff["eastmoor-viewer"] = console.runtime.config.staff["westvale-viewer"].model_copy(
        update={"id": "eastmoor-viewer", "tenant": "eastmoor"})
    viewer = console.signed_in_as("eastmoor-viewer")
    seen = viewer.get(f"/console/submissions/{reference}")
    assert seen.status_code == 200 and "/replay" not in seen.text
    refused = viewer.post(f"/console/deliveries/{parked}/replay", data={"csrf_token": csrf(seen)})
    assert refused.status_code == 403 and "operator role" in refused.text
    assert console.state(parked) == "parked"
    done = operator.post(f"/console/deliveries/{parked}/replay", data={"csrf_token": csrf(page)})
    assert done.status_code == 303 and done.headers["location"] == f"/console/submissions/{reference}?replayed={parked}"
    assert console.state(parked) == "pending"
    assert "is queued again" in operator.get(done.headers["location"]).text
    [entry] = audit.entries(console.runtime.engine, audit.AuditFilter(action="replay"))
    assert entry["actor"] == "staff:eastmoor-operator" and entry["target"] == f"delivery:{parked}"


def test_the_answers_are_redacted_until_a_caseworker_reveals_them_and_the_reveal_is_audited(console: Console) -> None:
    reference = console.submit("westvale", GENERAL)
    caseworker = console.signed_in_as("westvale-caseworker")
    page = caseworker.get(f"/console/submissions/{reference}")
    assert page.status_code == 200 and GENERAL["email"] not in page.text and "[hidden]" in page.text
    assert audit.entries(console.runtime.engine, audit.AuditFilter(action="submission.view")) == []
    shown = caseworker.post(f"/console/submissions/{reference}/reveal", data={"csrf_token": csrf(page)})
    assert shown.status_code == 200 and GENERAL["email"] in shown.text and "recorded in the audit log" in shown.text
    [entry] = audit.entries(console.runtime.engine, audit.AuditFilter(action="submission.view"))
    assert entry["actor"] == "staff:westvale-caseworker" and entry["target"] == reference
    viewer = console.signed_in_as("westvale-viewer")
    seen = viewer.get(f"/console/submissions/{reference}")
    assert "/reveal" not in seen.text
    refused = viewer.post(f"/console/submissions/{reference}/reveal", data={"csrf_token": csrf(seen)})
    assert refused.status_code == 403 and GENERAL["email"] not in refused.text


def test_search_finds_by_each_reference_form_state_and_date_and_pages_the_results(console: Console) -> None:
    made = [console.submit("westvale", GENERAL) for _ in range(27)]
    first = console.delivery_ids(made[0])["crm"]
    record_delivered(console.runtime.engine, first, datetime.now(UTC), "CRM-CASE-77")
    browser = console.signed_in_as("westvale-viewer")
    everything = browser.get("/console/submissions")
    assert "27 submissions found" in everything.text and 'aria-label="Page 2"' in everything.text
    second = browser.get("/console/submissions", params={"page": "2"})
    assert len(re.findall(r'href="/console/submissions/WBC', second.text)) == 2
    assert "1 submission found" in browser.get("/console/submissions", params={"reference": made[3]}).text
    by_office = browser.get("/console/submissions", params={"back_office_reference": "CRM-CASE-77"})
    assert "1 submission found" in by_office.text and made[0] in by_office.text
    assert "1 submission found" in browser.get("/console/submissions", params={"state": "delivered"}).text
    today = datetime.now(UTC).date()
    assert "27 submissions found" in browser.get("/console/submissions", params={"from": today.isoformat(), "to": today.isoformat()}).text
    assert "0 submissions found" in browser.get("/console/submissions", params={"to": (today - timedelta(days=1)).isoformat()}).text
    wrong = browser.get("/console/submissions", params={"from": "last tuesday", "state": "lost"})
    assert wrong.status_code == 400 and "There is a problem" in wrong.text
    assert "Received from must be a date" in wrong.text and "Choose a delivery state" in wrong.text


def test_past_the_count_cap_the_search_says_more_than_and_still_pages(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.console import search

    monkeypatch.setattr(search, "COUNT_CAP", 5)
    made = [console.submit("westvale", GENERAL) for _ in range(7)]
    browser = console.signed_in_as("westvale-viewer")
    everything = browser.get("/console/submissions")
    assert "More than 5 submissions found" in everything.text and "Narrow the search" in everything.text
    # the newest first, a page of them, whatever the count says
    assert made[-1] in everything.text
    exact = browser.get("/console/submissions", params={"reference": made[0]})
    assert "1 submission found" in exact.text and "More than" not in exact.text


def test_the_dashboard_shows_the_figures_of_what_was_seeded(console: Console) -> None:
    # from noon today (computed), so "today" holds everything whenever the test runs
    noon = datetime.combine(datetime.now(UTC).date(), time(12), UTC)
    taken = [2, 4, 10]  # minutes to the back office of the three straight-through deliveries
    with time_machine.travel(noon, tick=True) as clock:
        general = [console.submit("eastmoor", GENERAL) for _ in range(5)]
        garden = [console.submit("eastmoor", GARDEN) for _ in range(2)]
        console.submit("westvale", GENERAL)  # another council's: never in eastmoor's figures
        engine = console.runtime.engine
        crm = [console.delivery_ids(r)["crm"] for r in general + garden]
        garden_waste = [console.delivery_ids(r)["garden-waste"] for r in garden]
        for minutes, delivery_id in zip(taken, crm[:3], strict=True):
            clock.move_to(noon + timedelta(minutes=minutes))
            record_delivered(engine, delivery_id, datetime.now(UTC), None)
        record_retry(engine, crm[3], datetime.now(UTC), "timeout", datetime.now(UTC) + timedelta(minutes=5))
        record_retry(engine, crm[4], datetime.now(UTC), "timeout", datetime.now(UTC))
        record_delivered(engine, crm[4], datetime.now(UTC), None)  # delivered, but not straight through
        record_parked(engine, garden_waste[0], datetime.now(UTC), "400", "parked")
        clock.move_to(noon + timedelta(minutes=15))
        page = console.signed_in_as("eastmoor-operator").get("/console")
    assert page.status_code == 200
    delivered_minutes = sorted([*taken, taken[-1]])  # crm[4], retried then delivered, at noon + 10 minutes too
    median = delivered_minutes[-(-50 * len(delivered_minutes) // 100) - 1]
    p95 = delivered_minutes[-(-95 * len(delivered_minutes) // 100) - 1]
    for table in ("forms-1", "forms-2"):
        rows = figure_rows(page.text, table)
        assert set(rows) == {"missed-bin-collection"}
        form = rows["missed-bin-collection"]
        deliveries_made = len(crm) + len(garden_waste)
        assert form["received"] == str(len(general) + len(garden))
        assert form["delivered"] == "4" and form["retrying"] == "1" and form["parked"] == "1"
        assert form["straight_through"] == f"{3 / deliveries_made:.0%}"
        assert form["median"] == f"{median:.1f} min" and form["p95"] == f"{p95:.1f} min"
    connectors = figure_rows(page.text, "connectors-1")
    assert connectors["crm"]["received"] == str(len(crm)) and connectors["crm"]["delivered"] == "4"
    assert connectors["crm"]["straight_through"] == f"{3 / len(crm):.0%}"
    assert connectors["garden-waste"] == {**connectors["garden-waste"], "received": "2", "delivered": "0", "parked": "1", "median": "–"}


def test_sign_in_asks_for_a_code_with_pkce_returning_to_the_consoles_callback(console: Console) -> None:
    start = console.browser().get("/console/sign-in")
    assert start.status_code == 302
    location = httpx.URL(start.headers["location"])
    query = dict(location.params)
    assert query["redirect_uri"] == f"{BASE}/console/callback" and query["code_challenge_method"] == "S256"
    assert query["state"] and query["nonce"] and query["response_type"] == "code"
    login = start.headers["set-cookie"].lower()
    assert login.startswith("__host-hub_console_login=") and "secure" in login and "httponly" in login and "path=/;" in login + ";"
    assert "domain" not in login


def test_a_callback_that_did_not_start_in_this_browser_is_refused(console: Console) -> None:
    stray = console.browser().get("/console/callback", params={"code": "abc", "state": "xyz"})
    assert stray.status_code == 401 and "did not start in this browser" in stray.text
    assert COOKIE + "=" not in stray.headers.get("set-cookie", "")


def test_the_templates_and_console_js_ship_in_the_wheel() -> None:
    """setup.py's package data names every template and the console's own script."""
    root = Path(__file__).resolve().parents[2]
    setup = (root / "setup.py").read_text()
    console_dir = root / "hub" / "console"
    shipped = [p.relative_to(root / "hub").as_posix() for p in (*console_dir.glob("templates/*"), *console_dir.glob("static/*.js"))]
    patterns = re.findall(r'"(console/[^"]+)"', setup)
    assert shipped
    # setuptools matches package data like fnmatch, one path segment per "*"
    unshipped = [p for p in shipped if not any(fnmatch.fnmatch(p, pat) and p.count("/") == pat.count("/") for pat in patterns)]
    assert unshipped == [], f"not in setup.py's package data: {unshipped}"


def test_the_parked_list_shows_the_councils_own_filters_them_and_an_operator_replays_from_it(console: Console) -> None:
    mine = [console.submit("eastmoor", GENERAL) for _ in range(2)] + [console.submit("eastmoor", GARDEN)]
    theirs = console.submit("westvale", GENERAL)
    engine = console.runtime.engine
    crm = [console.delivery_ids(r)["crm"] for r in mine]
    garden = console.delivery_ids(mine[2])["garden-waste"]
    for delivery_id in crm[:2]:
        record_parked(engine, delivery_id, datetime.now(UTC), "CRM said 400: uprn unknown", "parked")
    record_parked(engine, garden, datetime.now(UTC), "garden waste said 409", "parked")
    record_parked(engine, console.delivery_ids(theirs)["crm"], datetime.now(UTC), "CRM said 400", "parked")

    operator = console.signed_in_as("eastmoor-operator")
    listed = operator.get("/console/deliveries")
    assert listed.status_code == 200 and "3 parked deliveries" in listed.text
    assert all(r in listed.text for r in mine) and theirs not in listed.text
    assert "1 parked delivery" in operator.get("/console/deliveries", params={"connector": "garden-waste"}).text
    by_reason = operator.get("/console/deliveries", params={"reason": "uprn unknown"})
    assert "2 parked deliveries" in by_reason.text and mine[2] not in by_reason.text

    back = operator.post(f"/console/deliveries/{garden}/replay", data={"csrf_token": csrf(listed), "back": "deliveries"})
    assert back.status_code == 303 and back.headers["location"] == f"/console/deliveries?replayed={garden}"
    assert console.state(garden) == "pending"
    after = operator.get(back.headers["location"])
    assert "is queued again" in after.text and "2 parked deliveries" in after.text

    console.runtime.config.staff["eastmoor-viewer"] = console.runtime.config.staff["westvale-viewer"].model_copy(
        update={"id": "eastmoor-viewer", "tenant": "eastmoor"})
    seen = console.signed_in_as("eastmoor-viewer").get("/console/deliveries")
    assert "2 parked deliveries" in seen.text and "/replay" not in seen.text


def test_the_dashboard_shows_the_brokers_own_queue_depth_per_connector(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = console.runtime.transport
    with transport.connect() as connection:
        transport.declare(connection, ["crm"])
        transport.queue("crm")(connection.default_channel).purge()  # the in-process broker outlives each test
    publisher = transport.publisher()
    publisher.connect(["crm"])
    try:
        publisher.publish_many([("crm", b'{"delivery_ids": [1], "connector": "crm"}')] * 3, transport.exchange.name)
    finally:
        publisher.close()
    page = console.signed_in_as("eastmoor-operator").get("/console")
    assert page.status_code == 200
    rows = figure_rows(page.text, "waiting")
    assert rows["crm"]["ready"] == "3" and rows["crm"]["consumers"] == "0"
    assert rows["crm"]["dead"] == "not used"  # the in-process broker dead-letters nothing
    assert rows["garden-waste"]["ready"] == "no queue yet"
    assert "The broker did not answer" not in page.text

    monkeypatch.setattr(transport, "depths", lambda connectors: None)  # as when RabbitMQ is away (tested on it)
    away = console.signed_in_as("eastmoor-operator").get("/console")
    assert away.status_code == 200 and "The broker did not answer, so its queue depths are not shown." in away.text
    assert figure_rows(away.text, "waiting")["crm"]["ready"] == "not known"


def test_an_oversized_console_form_is_refused_before_it_is_read_whole(console: Console) -> None:
    from hub.console.session import MAX_FORM_BYTES

    browser = console.signed_in_as("eastmoor-operator")

    def endless() -> Iterator[bytes]:  # no Content-Length: refused once the stream passes the limit
        for _ in range(4 * MAX_FORM_BYTES // (1 << 20)):
            yield b"a" * (1 << 20)

    headers = {"content-type": "application/x-www-form-urlencoded"}
    streamed = browser.post("/console/sign-out", content=endless(), headers=headers)
    assert streamed.status_code == 400 and "This form is too large" in streamed.text
    declared = browser.post("/console/sign-out", content=b"a=1", headers={**headers, "content-length": str(MAX_FORM_BYTES + 1)})
    assert declared.status_code == 400 and "This form is too large" in declared.text
