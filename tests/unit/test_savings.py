"""Channel-shift savings (hub/console/savings.py) from submissions posted through intake and
delivered, parked or replayed on the hub: the figures, their unit costs, the tenant scope, and the
JSON admin endpoint."""

# ruff: noqa: F811 - the `console` fixture is test_console's, imported, and named by each test
from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import time_machine
from pydantic import SecretStr

from hub.api.app import create_app
from hub.auth import sessions
from hub.config.files import SavingsEntry, UnitCosts
from hub.config.settings import Settings
from hub.console.savings import savings
from hub.console.savings_pages import neutralised
from hub.runtime import Runtime
from hub.store.deliveries import record_delivered, record_parked
from hub.store.migrate import upgrade
from hub.store.replay import ParkedFilter, replay
from tests.support.oidc import oidc_issuer
from tests.unit.test_console import BASE, GARDEN, GENERAL, Console, console  # noqa: F401 - the fixture

DEFAULTS = UnitCosts()


@pytest.fixture()
def pg_console(postgres: Any, tmp_path: Path) -> Iterator[Console]:
    """test_console's console, its store on the tests' PostgreSQL server."""
    with oidc_issuer() as issuer:
        secret = secrets.token_hex(32)
        keys = {"eastmoor": "em-key-" + secrets.token_hex(8), "westvale": "wv-key-" + secrets.token_hex(8)}
        client_id, client_secret = issuer.register_client(f"{BASE}/console/callback")
        url = postgres.create_database("savings_" + secrets.token_hex(4))
        settings = Settings(database_url=url, broker_url="memory://", staff_auth="both", oidc_issuer=issuer.url,
                            oidc_client_id=client_id, oidc_client_secret=SecretStr(client_secret),
                            session_key=SecretStr(secret), public_url=BASE)
        env = {"HUB_DEMO_API_KEY": keys["eastmoor"], "WESTVALE_API_KEY": keys["westvale"],
               "CRM_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t", "GARDEN_WASTE_URL": "http://127.0.0.1:9", "GARDEN_WASTE_API_TOKEN": "t"}
        runtime = Runtime.build(settings, env)
        upgrade(runtime.engine)
        try:
            yield Console(runtime, create_app(runtime), issuer, secret.encode(), keys)
        finally:
            runtime.close()


def seed(console: Console) -> dict[str, int]:
    """Eastmoor: last month 2 straight in; this month 3 straight in, one with a parked garden
    delivery, one parked then replayed and delivered. Westvale: 1 straight in this month.
    Returns the expected straight-in count per month key."""
    engine = console.runtime.engine
    now = datetime.now(UTC)
    last_month = now.replace(day=1) - timedelta(days=1)

    def deliver_all(reference: str) -> None:
        for delivery_id in console.delivery_ids(reference).values():
            record_delivered(engine, delivery_id, datetime.now(UTC), None)

    with time_machine.travel(last_month.replace(hour=12), tick=True):
        before = [console.submit("eastmoor", GENERAL) for _ in range(2)]
        for reference in before:
            deliver_all(reference)
    straight = [console.submit("eastmoor", GENERAL) for _ in range(3)]
    for reference in straight:
        deliver_all(reference)
    garden = console.submit("eastmoor", GARDEN)
    ids = console.delivery_ids(garden)
    record_delivered(engine, ids["crm"], now, None)
    record_parked(engine, ids["garden-waste"], now, "400", "parked")
    replayed = console.submit("eastmoor", GENERAL)
    crm = console.delivery_ids(replayed)["crm"]
    record_parked(engine, crm, now, "400", "parked")
    replay(engine, ParkedFilter(ids=(crm,)), "test")
    record_delivered(engine, crm, datetime.now(UTC), None)
    deliver_all(console.submit("westvale", GENERAL))
    return {last_month.strftime("%Y-%m"): len(before), now.strftime("%Y-%m"): len(straight)}


def test_only_submissions_delivered_everywhere_without_a_replay_count_at_the_default_costs(console: Console) -> None:
    expected = seed(console)
    found = savings(console.runtime.engine, console.runtime.config, "eastmoor")
    assert {x.month: x.straight_in for x in found} == expected
    assert {x.tenant for x in found} == {"eastmoor"} and {x.form for x in found} == {"missed-bin-collection"}
    for line in found:
        assert line.replaces == "phone"
        assert line.rekeying_minutes == 5 * expected[line.month]
        assert line.money_saved == round(expected[line.month] * (DEFAULTS.phone - DEFAULTS.online), 2)
    everyone = savings(console.runtime.engine, console.runtime.config, None)
    assert {x.tenant for x in everyone} == {"eastmoor", "westvale"}
    this_month = max(expected)
    only = savings(console.runtime.engine, console.runtime.config, "eastmoor", month_from=this_month, month_to=this_month)
    assert [(x.month, x.straight_in) for x in only] == [(this_month, expected[this_month])]


def test_the_configured_channel_unit_costs_and_minutes_change_the_figures(console: Console) -> None:
    expected = seed(console)
    costs = UnitCosts(face_to_face=20.0, online=0.5)
    config = replace(console.runtime.config, savings=(
        SavingsEntry(unit_costs=costs),
        SavingsEntry(form="missed-bin-collection", replaces="face_to_face", rekeying_minutes=12),
    ))
    for line in savings(console.runtime.engine, config, "eastmoor"):
        n = expected[line.month]
        assert line.replaces == "face_to_face" and line.rekeying_minutes == 12 * n
        assert line.money_saved == round(n * (20.0 - 0.5), 2)


def test_the_json_endpoint_gives_the_same_figures_scoped_to_the_staff_members_tenant(console: Console) -> None:
    seed(console)
    config = console.runtime.config

    def token(staff_id: str) -> str:
        return sessions.issue(config.staff[staff_id], console.secret, 600).token

    with console.browser() as client:
        own = client.get("/v1/admin/savings", headers={"Authorization": f"Bearer {token('eastmoor-operator')}"})
        assert own.status_code == 200, own.text
        assert own.json()["items"] == [x.as_dict() for x in savings(console.runtime.engine, config, "eastmoor")]
        assert "westvale" not in own.text and "Socitm" in own.json()["source"]
        page = table_rows(console.signed_in_as("eastmoor-operator").get("/console/savings").text)
        assert [[x["tenant"], x["month"], str(x["straight_in"]), f"{x['money_saved_gbp']:.2f}"] for x in own.json()["items"]] == [
            [r[0], r[2], r[3], r[6]] for r in page]
        every = client.get("/v1/admin/savings", headers={"Authorization": f"Bearer {token('ict-operator')}"})
        assert {x["tenant"] for x in every.json()["items"]} == {"eastmoor", "westvale"}
        bad = client.get("/v1/admin/savings", params={"from": "2025-13"},
                         headers={"Authorization": f"Bearer {token('eastmoor-operator')}"})
        assert bad.status_code == 422 and "from" in bad.text


def table_rows(html: str) -> list[list[str]]:
    body = html.split('id="savings"', 1)[1].split("</tbody>", 1)[0].split("<tbody", 1)[1]
    return [[unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_the_page_shows_the_figures_as_chart_and_table_and_the_csv_equals_the_table(console: Console) -> None:
    expected = seed(console)
    browser = console.signed_in_as("eastmoor-operator")
    page = browser.get("/console/savings")
    assert page.status_code == 200, page.text
    assert "Socitm Insight channel-cost benchmarking" in page.text and 'href="/console/savings"' in page.text
    rows = table_rows(page.text)
    assert [(r[0], r[2], r[3]) for r in rows] == [("eastmoor", m, str(n)) for m, n in sorted(expected.items())]
    assert all(r[6] == f"{int(r[3]) * (DEFAULTS.phone - DEFAULTS.online):.2f}" for r in rows)
    assert "westvale" not in page.text
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg and "style=" not in svg
    assert svg.count("<rect") == len(rows)
    download = browser.get("/console/savings.csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(download.text)))
    assert lines[1:] == rows
    bad = browser.get("/console/savings", params={"from": "March", "to": "2025-13", "form": "nope"})
    assert bad.status_code == 400
    summary = bad.text.split("govuk-error-summary__list", 1)[1].split("</ul>", 1)[0]
    assert all(f'href="#{field}"' in summary for field in ("from", "to", "form"))


def test_a_cell_a_spreadsheet_would_run_is_quoted() -> None:
    assert [neutralised(x) for x in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "eastmoor")] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "eastmoor"]


def test_the_same_figures_on_postgresql(pg_console: Console) -> None:
    expected = seed(pg_console)
    found = savings(pg_console.runtime.engine, pg_console.runtime.config, "eastmoor")
    assert {x.month: x.straight_in for x in found} == expected
    assert {x.tenant for x in savings(pg_console.runtime.engine, pg_console.runtime.config, None)} == {"eastmoor", "westvale"}


def test_the_savings_configuration_loads_and_a_bad_entry_is_refused_naming_the_field(tmp_path: Path) -> None:
    from hub.config.files import load_config
    from hub.errors import ConfigError
    from tests.unit.test_config import minimal, write

    minimal(tmp_path)
    write(tmp_path, "savings.yaml", "savings:\n  - {unit_costs: {phone: 4.5}}\n  - {form: missed-bin-collection, replaces: post, rekeying_minutes: 8}\n")
    config = load_config(tmp_path, {})
    assert config.unit_costs.phone == 4.5 and config.unit_costs.face_to_face == DEFAULTS.face_to_face
    assert config.savings_for("missed-bin-collection").replaces == "post"
    assert config.savings_for("other").replaces == "phone" and config.savings_for("other").rekeying_minutes == 5
    write(tmp_path, "savings.yaml", "savings:\n  - {form: x, replaces: pigeon, rekeying_minutes: -1}\n  - {unit_costs: {phone: -2}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    message = str(caught.value)
    assert "savings.yaml:2" in message and "replaces" in message and "rekeying_minutes" in message and "unit_costs.phone" in message


def test_on_the_embedded_hub_the_worker_delivered_count_and_a_replayed_one_does_not(tmp_path: Path) -> None:
    from simulators.crm import FailurePlan
    from tests.support.staff import staffed_hub

    with staffed_hub(tmp_path) as (hub, tokens):
        straight = [hub.post("missed-bin-collection", GENERAL).json()["reference"] for _ in range(2)]
        for reference in straight:
            assert [d["state"] for d in hub.wait_until_settled(reference)["deliveries"]] == ["delivered"]
        hub.crm.arm(FailurePlan(count=1, mode="status", status=400))
        replayed = hub.post("missed-bin-collection", GENERAL).json()["reference"]
        assert [d["state"] for d in hub.wait_until_settled(replayed)["deliveries"]] == ["parked"]
        [parked] = [d["delivery_id"] for d in hub.admin("GET", "/deliveries").json() if d["reference"] == replayed]
        assert hub.admin("POST", f"/deliveries/{parked}/replay").status_code == 200
        assert [d["state"] for d in hub.wait_until_settled(replayed)["deliveries"]] == ["delivered"]
        items = hub.admin("GET", "/savings", token=tokens["eastmoor-operator"]).json()["items"]
    month = datetime.now(UTC).strftime("%Y-%m")
    assert [(x["tenant"], x["month"], x["straight_in"]) for x in items] == [("eastmoor", month, len(straight))]
    assert items[0]["money_saved_gbp"] == round(len(straight) * (DEFAULTS.phone - DEFAULTS.online), 2)
