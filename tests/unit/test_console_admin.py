"""The console's admin pages over https://testserver with the real OpenID Connect mock (the
`console` fixture of test_console.py): clients and keys (roles, CSRF, tenants, rotation with a
grace period under a frozen clock, revoking, a key shown once), webhooks, and the audit log with
its CSV export (formulas neutralised, one tenant's rows only).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx
import time_machine
from fastapi.testclient import TestClient

from hub.console.admin_pages import neutralised
from hub.store import audit, clients, webhooks
from tests.unit import test_console
from tests.unit.test_console import Console, csrf

# test_console.py's fixture: a hub with the real OIDC mock, on SQLite under tmp_path
console = test_console.console

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def stored_client(c: Console, client_id: str, tenant: str) -> str:
    _, key = clients.create(c.runtime.engine, clients.NewClient(client_id, tenant), "cli:test")
    return key


def api(c: Console, key: str) -> httpx.Response:
    """A front end's call with this key (listing its webhooks needs nothing but the key)."""
    with TestClient(c.app, base_url="https://testserver") as front_end:
        return front_end.get("/v1/webhooks", headers={"Authorization": f"Bearer {key}"})


def rotate(c: Console, browser: TestClient, client_id: str, **fields: str) -> httpx.Response:
    page = browser.get("/console/clients")
    prefix = re.search(rf'action="/console/clients/{client_id}/rotate".*?name="key_prefix" value="([^"]+)"', page.text, re.S)
    assert prefix, "no Rotate form for the client"
    data = {"csrf_token": csrf(page), "key_prefix": prefix.group(1), **fields}
    return browser.post(f"/console/clients/{client_id}/rotate", data=data)


def new_key(page: httpx.Response) -> str:
    found = re.search(r'id="new-key" type="text" readonly value="([^"]+)"', page.text)
    assert found, "no new key on the page"
    return unescape(found.group(1))


def test_a_viewer_sees_the_clients_but_cannot_rotate_a_key(console: Console) -> None:
    key = stored_client(console, "wv-kiosk", "westvale")
    viewer = console.signed_in_as("westvale-viewer")
    page = viewer.get("/console/clients")
    assert page.status_code == 200 and "wv-kiosk" in page.text and key[:8] in page.text
    assert "Rotate key" not in page.text and "Make client" not in page.text
    before = clients.get(console.runtime.engine, "wv-kiosk")
    answer = viewer.post("/console/clients/wv-kiosk/rotate", data={"csrf_token": csrf(page), "key_prefix": before.key_prefix})  # type: ignore[union-attr]
    assert answer.status_code == 403 and "admin role" in answer.text
    assert clients.get(console.runtime.engine, "wv-kiosk") == before and api(console, key).status_code == 200


def test_a_rotation_without_the_csrf_token_is_refused(console: Console) -> None:
    key = stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    before = clients.get(console.runtime.engine, "wv-kiosk")
    for data in ({"key_prefix": before.key_prefix}, {"key_prefix": before.key_prefix, "csrf_token": "forged"}):  # type: ignore[union-attr]
        answer = admin.post("/console/clients/wv-kiosk/rotate", data=data)
        assert answer.status_code == 403 and "security token" in answer.text
    assert admin.post("/console/clients/wv-kiosk/revoke", data={}).status_code == 403
    assert clients.get(console.runtime.engine, "wv-kiosk") == before and api(console, key).status_code == 200


def test_another_councils_client_is_not_found_and_not_listed(console: Console) -> None:
    key = stored_client(console, "em-kiosk", "eastmoor")
    admin = console.signed_in_as("westvale-admin")
    page = admin.get("/console/clients")
    assert "em-kiosk" not in page.text and key[:8] not in page.text
    for action in ("rotate", "revoke", "revoke-previous"):
        answer = admin.post(f"/console/clients/em-kiosk/{action}", data={"csrf_token": csrf(page), "key_prefix": key[:8]})
        assert answer.status_code == 404, action
    assert clients.get(console.runtime.engine, "em-kiosk").state() == "active" and api(console, key).status_code == 200  # type: ignore[union-attr]


def test_the_new_key_is_on_the_page_after_the_post_once_and_never_again(console: Console) -> None:
    old = stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    shown = rotate(console, admin, "wv-kiosk")
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    key = new_key(shown)
    assert key != old and shown.text.count(key) == 1 and shown.url.path == "/console/clients/wv-kiosk/rotate" and key not in str(shown.url)
    assert "is not shown again" in shown.text
    reload = admin.get("/console/clients")
    assert key not in reload.text and key[:8] in reload.text
    # the same form sent again (a reload of the POST) rotates nothing and shows no key
    again = admin.post("/console/clients/wv-kiosk/rotate", data={"csrf_token": csrf(reload), "key_prefix": old[:8]})
    assert again.status_code == 409 and key not in again.text
    assert api(console, key).status_code == 200
    [entry] = audit.entries(console.runtime.engine, audit.AuditFilter(action="client.rotate"))
    assert entry["actor"] == "staff:westvale-admin" and entry["tenant"] == "westvale" and key not in str(entry)
    assert entry["detail"]["previous_key_prefix"] == old[:8]


def test_the_rotated_key_works_through_its_grace_period_and_not_after(console: Console) -> None:
    old = stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    with time_machine.travel(datetime.now(UTC), tick=False) as clock:
        key = new_key(rotate(console, admin, "wv-kiosk", grace_hours="2"))
        assert api(console, old).status_code == 200 and api(console, key).status_code == 200
        page = console.signed_in_as("westvale-admin").get("/console/clients")
        assert re.search(rf"<code>{re.escape(old[:8])}…</code> works until", page.text)
        clock.shift(timedelta(hours=1, minutes=59))
        assert api(console, old).status_code == 200
        clock.shift(timedelta(minutes=2))
        refused = api(console, old)
        assert refused.status_code == 401 and "expired" in refused.json()["detail"]
        assert api(console, key).status_code == 200


def test_the_default_grace_period_is_the_setting(console: Console) -> None:
    stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    start = datetime.now(UTC)
    rotate(console, admin, "wv-kiosk")
    stored = clients.get(console.runtime.engine, "wv-kiosk")
    grace = timedelta(hours=console.runtime.settings.client_key_grace_hours)
    assert stored is not None and stored.previous_key_expires_at is not None
    assert start + grace <= stored.previous_key_expires_at <= datetime.now(UTC) + grace


def test_revoking_stops_the_keys_at_the_api(console: Console) -> None:
    old = stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    key = new_key(rotate(console, admin, "wv-kiosk"))
    page = admin.get("/console/clients")
    done = admin.post("/console/clients/wv-kiosk/revoke-previous", data={"csrf_token": csrf(page)})
    assert done.status_code == 303
    assert api(console, old).status_code == 401 and api(console, key).status_code == 200
    revoked = admin.post("/console/clients/wv-kiosk/revoke", data={"csrf_token": csrf(page)})
    assert revoked.status_code == 303 and "revoked" in admin.get(revoked.headers["location"]).text
    refused = api(console, key)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    actions = [e["action"] for e in audit.entries(console.runtime.engine, audit.AuditFilter(tenant="westvale"))]
    assert actions[-2:] == ["client.revoke_previous_key", "client.revoke"]


def test_making_a_client_shows_its_key_once_and_names_each_bad_field(console: Console) -> None:
    admin = console.signed_in_as("westvale-admin")
    page = admin.get("/console/clients")
    bad = admin.post("/console/clients", data={"csrf_token": csrf(page), "id": "Bad Id", "forms": "no-such-form", "expires_in_days": "soon"})
    assert bad.status_code == 400 and "There is a problem" in bad.text
    assert "Key lasts (days) must be a whole number" in bad.text
    bad = admin.post("/console/clients", data={"csrf_token": csrf(page), "id": "Bad Id", "forms": "no-such-form"})
    assert "Id: use lower-case letters" in bad.text and "the hub has no form" in unescape(bad.text)
    made = admin.post("/console/clients", data={"csrf_token": csrf(page), "id": "wv-app", "name": "Westvale app", "forms": "*"})
    assert made.status_code == 201
    key = new_key(made)
    assert made.text.count(key) == 1 and api(console, key).status_code == 200
    assert key not in admin.get("/console/clients").text
    assert clients.get(console.runtime.engine, "wv-app").tenant == "westvale"  # type: ignore[union-attr]


def test_cells_a_spreadsheet_would_run_start_with_a_quote() -> None:
    for cell in ('=HYPERLINK("http://evil.example/","click")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert neutralised(cell) == "'" + cell
    assert neutralised("client.rotate") == "client.rotate" and neutralised(None) == "" and neutralised({"a": 1}) == '{"a": 1}'


def export(browser: TestClient, **filters: str) -> list[dict[str, str]]:
    answer = browser.get("/console/audit.csv", params=filters)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(answer.text)))


def test_the_csv_export_neutralises_formulas_holds_only_the_tenants_rows_and_is_audited(console: Console) -> None:
    engine = console.runtime.engine
    formula = '=HYPERLINK("http://evil.example/","click")'
    audit.record(engine, "+staff:mallory", "westvale", "client.create", formula, {"note": "-1"})
    audit.record(engine, "cli:eastmoor-ict", "eastmoor", "client.create", "client:em-secret-kiosk")
    audit.record(engine, "system:host", None, "config.change", "config")
    admin = console.signed_in_as("westvale-admin")
    rows = export(admin)
    mine = [r for r in rows if r["action"] == "client.create"]
    assert [r["target"] for r in mine] == ["'" + formula] and mine[0]["actor"] == "'+staff:mallory"
    assert {r["tenant"] for r in rows} == {"westvale"} and not any("em-secret-kiosk" in str(r) for r in rows)
    [exported] = audit.entries(engine, audit.AuditFilter(action="audit.export"))
    assert exported["actor"] == "staff:westvale-admin" and exported["tenant"] == "westvale"
    # filtered: only what the filters select; an export is recorded before its rows are read, so it lists itself
    again = export(admin, action="audit.export")
    assert [r["action"] for r in again] == ["audit.export", "audit.export"] and int(again[0]["id"]) > int(again[1]["id"])


def test_the_audit_page_filters_and_pages_newest_first(console: Console) -> None:
    engine = console.runtime.engine
    for n in range(60):
        audit.record(engine, "cli:jo", "westvale", "replay", f"delivery:{n}", {"reference": f"WV{n:04d}"})
    audit.record(engine, "cli:jo", "eastmoor", "replay", "delivery:999", {"reference": "EMREF"})
    viewer = console.signed_in_as("westvale-viewer")
    first = viewer.get("/console/audit", params={"action": "replay"})
    assert first.status_code == 200
    targets = re.findall(r"<td class=\"govuk-table__cell\">(delivery:\d+)</td>", first.text)
    assert targets == [f"delivery:{n}" for n in range(59, 9, -1)]
    older = re.search(r'href="(/console/audit\?[^"]+)" rel="next"', first.text)
    assert older
    second = viewer.get(unescape(older.group(1)))
    assert re.findall(r"<td class=\"govuk-table__cell\">(delivery:\d+)</td>", second.text) == [f"delivery:{n}" for n in range(9, -1, -1)]
    assert 'rel="next"' not in second.text
    by_ref = viewer.get("/console/audit", params={"reference": "WV0007"})
    assert re.findall(r"<td class=\"govuk-table__cell\">(delivery:\d+)</td>", by_ref.text) == ["delivery:7"]
    other = viewer.get("/console/audit", params={"reference": "EMREF"})
    assert 'id="no-entries"' in other.text and "delivery:999" not in other.text
    today = datetime.now(UTC).date()
    past = viewer.get("/console/audit", params={"to": (today - timedelta(days=1)).isoformat()})
    assert "No entries match" in past.text
    bad = viewer.get("/console/audit", params={"from": "yesterday"})
    assert bad.status_code == 400 and "From must be a date" in bad.text


def test_webhooks_are_made_with_a_clear_error_for_a_bad_url_the_secret_shown_once_then_disabled_and_deleted(console: Console) -> None:
    key = stored_client(console, "wv-kiosk", "westvale")
    admin = console.signed_in_as("westvale-admin")
    page = admin.get("/console/webhooks")
    assert page.status_code == 200 and "No webhooks yet" in page.text
    bad = admin.post("/console/webhooks", data={"csrf_token": csrf(page), "client_id": "wv-kiosk", "url": "ftp://x"})
    assert bad.status_code == 400 and "Enter the URL as http:// or https://" in bad.text
    refused = admin.post("/console/webhooks", data={"csrf_token": csrf(page), "client_id": "wv-kiosk", "url": "https://elsewhere.example.com/hook"})
    assert refused.status_code == 400 and "The hub will not call this URL" in refused.text
    made = admin.post("/console/webhooks", data={"csrf_token": csrf(page), "client_id": "wv-kiosk", "url": "http://127.0.0.1:9/wv-hook",
                                                 "event-delivery.parked": "yes"})
    assert made.status_code == 201
    secret = unescape(re.search(r'id="new-secret" type="text" readonly value="([^"]+)"', made.text).group(1))  # type: ignore[union-attr]
    assert secret.startswith("whsec_") and made.text.count(secret) == 1
    listed = admin.get("/console/webhooks")
    assert "http://127.0.0.1:9/wv-hook" in listed.text and secret not in listed.text and "delivery.parked" in listed.text
    [hook] = api(console, key).json()["webhooks"]
    assert hook["events"] == ["delivery.parked"]
    assert admin.post(f"/console/webhooks/{hook['id']}/disable", data={"csrf_token": csrf(listed)}).status_code == 303
    assert "disabled" in admin.get("/console/webhooks").text and api(console, key).json()["webhooks"] == []
    assert console.signed_in_as("westvale-viewer").post(f"/console/webhooks/{hook['id']}/delete", data={"csrf_token": csrf(listed)}).status_code == 403
    assert admin.post(f"/console/webhooks/{hook['id']}/delete", data={"csrf_token": csrf(listed)}).status_code == 303
    assert webhooks.for_tenant(console.runtime.engine, "westvale") == []
    actions = [e["action"] for e in audit.entries(console.runtime.engine, audit.AuditFilter(tenant="westvale")) if e["action"].startswith("webhook.")]
    assert actions == ["webhook.create", "webhook.disable", "webhook.delete"]


def test_another_councils_webhook_is_not_found(console: Console) -> None:
    key = stored_client(console, "em-kiosk", "eastmoor")
    with TestClient(console.app, base_url="https://testserver") as front_end:
        made = front_end.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/em-hook"}, headers={"Authorization": f"Bearer {key}"})
    assert made.status_code == 201
    admin = console.signed_in_as("westvale-admin")
    page = admin.get("/console/webhooks")
    assert "em-hook" not in page.text
    for action in ("disable", "delete"):
        assert admin.post(f"/console/webhooks/{made.json()['id']}/{action}", data={"csrf_token": csrf(page)}).status_code == 404
    assert len(webhooks.for_tenant(console.runtime.engine, "eastmoor")) == 1
