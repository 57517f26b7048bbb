"""The console's parked and failed deliveries over https://testserver: the filter and its errors,
bulk replay with a dry run, and edit then replay, through to what the CRM simulator receives.

The page tests use test_console's console (the real OIDC mock, no worker); the journeys that must
reach a back office use the embedded hub (worker, relay, CRM simulator on loopback).
"""

# ruff: noqa: F811 - the `console` fixture is test_console's, imported, and named by each test
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from hub.auth import sessions
from hub.auth.sessions import session_secret
from hub.console import web as console_web
from hub.store import audit
from hub.store.deliveries import record_parked, record_retry
from hub.store.personal_data import purge
from hub.store.tables import corrections, outbox, submissions
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub
from tests.support.staff import staffed_hub
from tests.unit.test_console import GENERAL, Console, console, csrf, through_the_provider  # noqa: F401 - the fixture


def parked_westvale(console: Console, count: int, reason: str = "CRM said 400: uprn unknown") -> list[int]:
    ids = []
    for _ in range(count):
        [delivery_id] = console.delivery_ids(console.submit("westvale", GENERAL)).values()
        record_parked(console.runtime.engine, delivery_id, datetime.now(UTC), reason, "permanent")
        ids.append(delivery_id)
    return ids


def heading(page: httpx.Response) -> str:
    found = re.search(r'id="parked-count">([^<]+)<', page.text)
    return found.group(1).strip() if found else ""


def error_links(page: httpx.Response) -> dict[str, str]:
    summary = re.search(r'govuk-error-summary__list">(.*?)</ul>', page.text, re.S)
    assert summary, "no error summary on the page"
    return {href: unescape(text) for href, text in re.findall(r'<a href="#([^"]+)">([^<]+)</a>', summary.group(1))}


def test_the_filter_finds_by_connector_form_reason_state_and_dates(console: Console) -> None:
    engine = console.runtime.engine
    parked_westvale(console, 2)
    [other] = parked_westvale(console, 1, "CRM said 409: duplicate")
    [failing] = console.delivery_ids(console.submit("westvale", GENERAL)).values()
    record_retry(engine, failing, datetime.now(UTC), "CRM answered HTTP 503", datetime.now(UTC) + timedelta(minutes=5))
    browser = console.signed_in_as("westvale-viewer")
    assert heading(browser.get("/console/deliveries")) == "3 parked deliveries"
    assert heading(browser.get("/console/deliveries", params={"reason": "409"})) == "1 parked delivery"
    assert heading(browser.get("/console/deliveries", params={"connector": "crm", "form": "missed-bin-collection"})) == "3 parked deliveries"
    assert heading(browser.get("/console/deliveries", params={"form": "general-enquiry"})) == "0 parked deliveries"
    failed = browser.get("/console/deliveries", params={"state": "failed"})
    assert heading(failed) == "1 failed delivery" and "HTTP 503" in failed.text and "409" not in failed.text
    today, yesterday = date.today(), date.today() - timedelta(days=1)
    assert heading(browser.get("/console/deliveries", params={"from": today.isoformat(), "to": today.isoformat()})) == "3 parked deliveries"
    assert heading(browser.get("/console/deliveries", params={"to": yesterday.isoformat()})) == "0 parked deliveries"
    assert f'data-delivery="{other}"' in browser.get("/console/deliveries", params={"reason": "duplicate"}).text


def test_bad_filter_values_get_the_error_summary_naming_each_field(console: Console) -> None:
    browser = console.signed_in_as("westvale-viewer")
    page = browser.get("/console/deliveries", params={"connector": "nope", "form": "nope", "state": "lost", "from": "last tuesday",
                                                      "to": "2026-13-45", "reason": "x" * 201})
    assert page.status_code == 400 and "<title>Error: " in page.text
    links = error_links(page)
    assert set(links) == {"connector", "form", "state", "from", "to", "reason"}
    assert links["state"] == "Choose parked or failed" and "date like" in links["from"]
    reversed_dates = browser.get("/console/deliveries", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert error_links(reversed_dates) == {"to": "Parked or failed to must be the same as or after the from date"}


def test_a_viewer_cannot_replay_or_edit_and_a_post_without_csrf_is_refused(console: Console) -> None:
    [parked] = parked_westvale(console, 1)
    viewer = console.signed_in_as("westvale-viewer")
    listed = viewer.get("/console/deliveries")
    assert "Dry run" not in listed.text and "/edit" not in listed.text and "/replay" not in listed.text
    token = csrf(listed)
    assert viewer.get(f"/console/deliveries/{parked}/edit").status_code == 403
    for path, form in ((f"/console/deliveries/{parked}/edit", {"answer:/notes": "x", "reason": "r"}),
                       (f"/console/deliveries/{parked}/corrections", {"answers": json.dumps(GENERAL), "reason": "r"}),
                       ("/console/deliveries/replay", {f"delivery-{parked}": "yes", "action": "replay"})):
        refused = viewer.post(path, data={**form, "csrf_token": token})
        assert refused.status_code == 403 and "needs the operator role" in unescape(refused.text), path
    operator = console.signed_in_as("westvale-admin")
    for path in (f"/console/deliveries/{parked}/corrections", "/console/deliveries/replay"):
        refused = operator.post(path, data={f"delivery-{parked}": "yes", "action": "replay", "answers": json.dumps(GENERAL), "reason": "r"})
        assert refused.status_code == 403 and "security token" in refused.text, path
    assert console.state(parked) == "parked"
    assert audit.entries(console.runtime.engine, audit.AuditFilter(action="replay")) == []


def test_another_councils_delivery_is_not_found_on_the_edit_pages(console: Console) -> None:
    [theirs] = console.delivery_ids(console.submit("eastmoor", GENERAL)).values()
    record_parked(console.runtime.engine, theirs, datetime.now(UTC), "CRM said 400", "permanent")
    browser = console.signed_in_as("westvale-admin")
    token = csrf(browser.get("/console"))
    assert browser.get(f"/console/deliveries/{theirs}/edit").status_code == 404
    assert browser.post(f"/console/deliveries/{theirs}/edit", data={"csrf_token": token, "reason": "r"}).status_code == 404
    assert browser.post(f"/console/deliveries/{theirs}/corrections", data={"csrf_token": token, "answers": "{}", "reason": "r"}).status_code == 404
    # named in a bulk replay: not replayed, and said to be no delivery of this member of staff's
    page = browser.post("/console/deliveries/replay", data={"csrf_token": token, f"delivery-{theirs}": "yes", "action": "replay"})
    assert "there is no such delivery for you" in page.text and console.state(theirs) == "parked"


def test_a_dry_run_shows_exactly_what_would_be_replayed_and_where_and_changes_nothing(console: Console) -> None:
    engine = console.runtime.engine
    picked, also, left = parked_westvale(console, 3)
    [failing] = console.delivery_ids(console.submit("westvale", GENERAL)).values()
    record_retry(engine, failing, datetime.now(UTC), "CRM answered HTTP 503", datetime.now(UTC) + timedelta(minutes=5))
    # signed in through the test provider, as Westvale's administrator (operator and more)
    console.issuer.add_person("wv-7d1c2a", name="Wendy Vale", email="wendy@westvale.example", email_verified=True)
    browser = console.browser()
    through_the_provider(console, browser, "wv-7d1c2a")
    token = csrf(browser.get("/console/deliveries"))
    chosen = {f"delivery-{picked}": "yes", f"delivery-{also}": "yes", f"delivery-{failing}": "yes"}

    def outbox_rows() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())

    before = outbox_rows()
    dry = browser.post("/console/deliveries/replay", data={"csrf_token": token, "action": "dry-run", **chosen})
    assert dry.status_code == 200 and "Dry run: nothing has been replayed" in dry.text
    assert "2 deliveries would be replayed; 1 could not be." in dry.text
    would = re.search(r'id="replayed">(.*?)</table>', dry.text, re.S).group(1)  # type: ignore[union-attr]
    assert f'data-delivery="{picked}"' in would and f'data-delivery="{also}"' in would and f'data-delivery="{left}"' not in would
    assert "REST/JSON POST http://127.0.0.1:9" in would  # where each one goes
    refused = re.search(r'id="refused">(.*?)</table>', dry.text, re.S).group(1)  # type: ignore[union-attr]
    assert f'data-delivery="{failing}"' in refused and "still retrying" in refused
    assert [console.state(i) for i in (picked, also, left)] == ["parked"] * 3 and console.state(failing) == "retrying"
    assert outbox_rows() == before and audit.entries(engine, audit.AuditFilter(action="replay")) == []

    # all that match the filter: the third one too, still nothing changed
    every = browser.post("/console/deliveries/replay", data={"csrf_token": token, "action": "dry-run", "all_matching": "yes", "f_reason": "uprn"})
    assert "3 deliveries would be replayed." in every.text and console.state(left) == "parked"

    # the confirm button of the first dry run replays exactly those it listed
    confirm = {name: "yes" for name in re.findall(r'<input type="hidden" name="(delivery-\d+)" value="yes">', dry.text)}
    assert confirm == {f"delivery-{picked}": "yes", f"delivery-{also}": "yes"}
    done = browser.post("/console/deliveries/replay", data={"csrf_token": token, "action": "replay", **confirm, f"delivery-{failing}": "yes"})
    assert done.status_code == 200 and "2 deliveries replayed; 1 could not be." in done.text
    assert [console.state(i) for i in (picked, also, left)] == ["pending", "pending", "parked"]
    replays = audit.entries(engine, audit.AuditFilter(action="replay"))
    assert sorted(e["target"] for e in replays) == sorted([f"delivery:{picked}", f"delivery:{also}"])
    assert {e["actor"] for e in replays} == {"staff:westvale-admin"}
    nothing = browser.post("/console/deliveries/replay", data={"csrf_token": token, "action": "dry-run"})
    assert nothing.status_code == 400 and error_links(nothing) == {"parked": "Tick at least one delivery, or all that match the filter"}


# -- edit then replay, to the back office


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with staffed_hub(tmp_path) as (embedded, _):
        yield embedded


def console_of(hub: EmbeddedHub, staff_id: str) -> tuple[httpx.Client, str]:
    """A browser of the embedded hub with a console session, and the session's CSRF token."""
    secret, settings = session_secret(hub.runtime.settings), hub.runtime.settings
    session = sessions.issue_console(staff_id, secret, settings.console_idle_minutes * 60, settings.console_absolute_hours * 3600)
    browser = httpx.Client(base_url=hub.url, timeout=10, headers={"Cookie": f"{console_web.COOKIE}={session.token}"})
    return browser, sessions.console_csrf(secret, session.sid)


def post_form(browser: httpx.Client, path: str, fields: dict[str, str]) -> httpx.Response:
    return browser.post(path, content=urlencode(fields), headers={"Content-Type": "application/x-www-form-urlencoded"})


def parked_in_crm(hub: EmbeddedHub, payload: Any) -> tuple[str, int]:
    """An Eastmoor submission the CRM refused for good (HTTP 400): parked at once."""
    hub.crm.arm(FailurePlan(count=1, mode="status", status=400))
    reference = hub.post("missed-bin-collection", payload).json()["reference"]
    body = hub.wait_until_settled(reference)
    assert [d["state"] for d in body["deliveries"]] == ["parked"]
    [parked] = [d["delivery_id"] for d in hub.admin("GET", "/deliveries").json() if d["reference"] == reference]
    return reference, parked


def inputs(page: httpx.Response) -> dict[str, str]:
    return {unescape(n): unescape(v) for n, v in re.findall(r'name="(answer:[^"]+)" type="text" value="([^"]*)"', page.text)}


def test_edit_then_replay_sends_the_corrected_answers_keeps_the_original_and_audits_it(hub: EmbeddedHub) -> None:
    original = {**GENERAL, "address": {"uprn": "100023336956"}, "notes": "Bin was out by 7am."}
    reference, parked = parked_in_crm(hub, original)
    operator, token = console_of(hub, "eastmoor-operator")
    edit = operator.get(f"/console/deliveries/{parked}/edit")
    assert edit.status_code == 200, edit.text
    shown = inputs(edit)
    assert shown["answer:/notes"] == original["notes"] and shown["answer:/address/uprn"] == "100023336956"
    assert "Unique Property Reference Number (UPRN)" in edit.text  # the schema's own titles label the inputs

    # a wrong UPRN and no reason: the edit page again, each problem named and linked to its input
    wrong = post_form(operator, f"/console/deliveries/{parked}/edit", {"csrf_token": token, **shown, "answer:/address/uprn": "1000-2333"})
    assert wrong.status_code == 400
    links = error_links(wrong)
    assert "Enter the reason for this correction" in links.values() and links.get("reason") == "Enter the reason for this correction"
    assert any("12-digit UPRN" in text for text in links.values()), links

    fixed = {**shown, "answer:/address/uprn": "100023336957", "answer:/notes": "Bin was out by 7am, at the side gate."}
    reason = "CRM refused the UPRN: the resident picked the neighbouring property"
    preview = post_form(operator, f"/console/deliveries/{parked}/edit", {"csrf_token": token, **fixed, "reason": reason})
    assert preview.status_code == 200, preview.text
    diff = dict(re.findall(r'<tr class="govuk-table__row" data-pointer="([^"]+)">(.*?)</tr>', preview.text, re.S))
    assert set(diff) == {"/address/uprn", "/notes"}
    assert "<del>100023336956</del>" in diff["/address/uprn"] and "<ins>100023336957</ins>" in diff["/address/uprn"]
    body = json.loads(unescape(re.search(r'<textarea[^>]*id="body"[^>]*>(.*?)</textarea>', preview.text, re.S).group(1)))  # type: ignore[union-attr]
    assert body["data"][0]["case_uprn"] == "100023336957"
    assert hub.crm.cases() == []  # nothing sent by a preview

    carried = dict(re.findall(r'<input type="hidden" name="(answers|reason)" value="([^"]*)">', preview.text))
    hub.crm.arm(FailurePlan(count=0))
    done = post_form(operator, f"/console/deliveries/{parked}/corrections",
                     {"csrf_token": token, "answers": unescape(carried["answers"]), "reason": unescape(carried["reason"])})
    assert done.status_code == 303 and done.headers["location"] == f"/console/submissions/{reference}?replayed={parked}"
    settled = hub.wait_until_settled(reference)
    assert [d["state"] for d in settled["deliveries"]] == ["delivered"]
    # the CRM received exactly the body the preview showed
    [case] = hub.crm.cases()
    assert case["record"] == body

    # the submission's own answers are as the resident sent them
    with hub.runtime.engine.connect() as conn:
        sealed = conn.execute(select(submissions.c.payload).where(submissions.c.reference == reference)).scalar_one()
        stored = conn.execute(select(corrections)).all()
    assert hub.runtime.sealer.open(sealed) == original
    [row] = stored
    assert row.reason == reason and row.actor == "staff:eastmoor-operator"
    assert "100023336957" not in row.payload and hub.runtime.sealer.open(row.payload)["address"]["uprn"] == "100023336957"
    [entry] = audit.entries(hub.runtime.engine, audit.AuditFilter(action="delivery.correct"))
    assert entry["actor"] == "staff:eastmoor-operator" and entry["target"] == f"delivery:{parked}"
    assert entry["detail"]["reason"] == reason and entry["detail"]["correction"] == row.id
    changes = {c["pointer"]: c for c in entry["detail"]["changes"]}
    assert changes["/address/uprn"] == {"pointer": "/address/uprn", "before": "100023336956", "after": "100023336957"}
    assert [e["target"] for e in audit.entries(hub.runtime.engine, audit.AuditFilter(action="replay"))] == [f"delivery:{parked}"]


def test_a_personal_answer_changed_is_audited_without_its_values_and_purging_blanks_the_correction(hub: EmbeddedHub) -> None:
    reference, parked = parked_in_crm(hub, GENERAL)
    answers = {**GENERAL, "name": {"first": "Aoife", "last": "MacCann"}}
    hub.crm.arm(FailurePlan(count=0))
    done = hub.admin("POST", f"/deliveries/{parked}/corrections", token=_token(hub, "eastmoor-operator"),
                     json={"answers": answers, "reason": "surname misspelt by the portal"})
    assert done.status_code == 200, done.text
    hub.wait_until_settled(reference)
    [case] = hub.crm.cases()
    assert case["record"]["data"][0]["last_name"] == "MacCann"
    [entry] = audit.entries(hub.runtime.engine, audit.AuditFilter(action="delivery.correct"))
    assert entry["detail"]["changes"] == [{"pointer": "/name/last", "before": "[personal]", "after": "[personal]"}]
    assert "MacCann" not in json.dumps(entry) and "McCann" not in json.dumps(entry)
    # retention purges the payload: the correction's answers go with it
    purged = purge(hub.runtime.engine, "eastmoor", "missed-bin-collection", datetime.now(UTC) + timedelta(days=1), datetime.now(UTC))
    assert purged >= 1
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(corrections.c.payload, corrections.c.diff)).all() == [(None, None)]


def _settled(hub: EmbeddedHub, reference: str) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=15)
    while datetime.now(UTC) < deadline:
        body = hub.status(reference, key=hub.westvale_key).json()
        if body["deliveries"] and all(d["state"] in ("delivered", "parked") for d in body["deliveries"]):
            return
    raise AssertionError(f"{reference} not settled")


def _token(hub: EmbeddedHub, staff_id: str) -> str:
    from tests.support.staff import TOKEN_ENV

    return hub.runtime.secrets.env(TOKEN_ENV[staff_id])


def test_the_json_endpoint_dry_runs_names_bad_fields_and_refuses_viewers(hub: EmbeddedHub) -> None:
    reference, parked = parked_in_crm(hub, GENERAL)
    token = _token(hub, "eastmoor-operator")
    path = f"/deliveries/{parked}/corrections"
    dry = hub.admin("POST", path, token=token, json={"answers": {**GENERAL, "notes": "corrected"}, "reason": "typo", "dry_run": True})
    assert dry.status_code == 200, dry.text
    found = dry.json()
    assert found["replayed"] is None and [c["pointer"] for c in found["changes"]] == ["/notes"]
    assert found["body"]["media_type"] == "application/json" and found["body"]["destination"].startswith("POST http://127.0.0.1:")
    assert "corrected" in json.loads(found["body"]["body"])["data"][0]["details"]
    bad = hub.admin("POST", path, token=token, json={"answers": {**GENERAL, "address": {"uprn": "12"}, "email": "not-an-address"}, "reason": "x"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    pointers = {e["pointer"] for e in bad.json()["errors"]}
    assert {"/answers/email"} <= pointers and any(p.startswith("/answers/address") for p in pointers), pointers
    no_reason = hub.admin("POST", path, token=token, json={"answers": GENERAL, "reason": ""})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    # another council's member of staff: not found; a viewer of the council's own: forbidden
    assert hub.admin("POST", path, token=hub.westvale_staff_token, json={"answers": GENERAL, "reason": "x"}).status_code == 404
    hub.crm.arm(FailurePlan(count=1, mode="status", status=400))
    theirs = hub.post("missed-bin-collection", GENERAL, key=hub.westvale_key).json()["reference"]
    _settled(hub, theirs)
    [westvale_parked] = [d["delivery_id"] for d in hub.admin("GET", "/deliveries").json() if d["reference"] == theirs]
    viewer = hub.admin("POST", f"/deliveries/{westvale_parked}/corrections", token=hub.westvale_staff_token,
                       json={"answers": {**GENERAL, "notes": "x"}, "reason": "x"})
    assert viewer.status_code == 403 and "operator" in viewer.json()["detail"]
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(corrections)).scalar_one() == 0
    assert hub.admin("GET", "/deliveries").json()[0]["delivery_id"] == parked  # still parked
