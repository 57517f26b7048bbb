"""The console's connectors pages over https://testserver, on a hub with the real OIDC mock: who
sees and who may act, CSRF, another council's connector, pause and resume as the worker feels
them, test connection, and the mapping preview against what a recording back office receives.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
import time_machine
from pydantic import SecretStr

from connectors.kit import FakeBackOffice
from connectors.testing import RecordingConnector
from hub.api.app import create_app
from hub.config.settings import Settings
from hub.console.connectors import PREVIEW_REFERENCE
from hub.delivery.attempt import DeliveryHandler
from hub.runtime import Runtime
from hub.store import audit
from hub.store.migrate import upgrade
from tests.support.oidc import oidc_issuer
from tests.unit.test_console import BASE, GENERAL, Console, csrf

CRM_REPLY = b'{"result": "success", "data": [{"data": [{"liberty_create_case_reference": "CAS-41"}]}]}'


@pytest.fixture()
def office() -> Iterator[FakeBackOffice]:
    with FakeBackOffice(body=CRM_REPLY) as recording:
        yield recording


@pytest.fixture()
def console(tmp_path: Path, office: FakeBackOffice) -> Iterator[Console]:
    with oidc_issuer() as issuer:
        secret = secrets.token_hex(32)
        keys = {"eastmoor": "em-key-" + secrets.token_hex(8), "westvale": "wv-key-" + secrets.token_hex(8)}
        client_id, client_secret = issuer.register_client(f"{BASE}/console/callback")
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'hub.db'}", broker_url="memory://", staff_auth="both",
            oidc_issuer=issuer.url, oidc_client_id=client_id, oidc_client_secret=SecretStr(client_secret),
            session_key=SecretStr(secret), public_url=BASE,
        )
        env = {"HUB_DEMO_API_KEY": keys["eastmoor"], "WESTVALE_API_KEY": keys["westvale"],
               "CRM_URL": office.url, "CRM_API_TOKEN": "crm-token-" + secrets.token_hex(6),
               "GARDEN_WASTE_URL": "http://127.0.0.1:9", "GARDEN_WASTE_API_TOKEN": "gw-token-" + secrets.token_hex(6)}
        runtime = Runtime.build(settings, env)
        upgrade(runtime.engine)
        try:
            yield Console(runtime, create_app(runtime), issuer, secret.encode(), keys)
        finally:
            runtime.close()


def cell(page: str, figure: str, row: str | None = None) -> str:
    """A figure of the connectors table's `row`, or of the detail page's summary list."""
    text = page
    if row is not None:
        found = re.search(rf'<tr class="govuk-table__row" data-name="{re.escape(row)}">(.*?)</tr>', page, re.S)
        assert found, f"no row {row}"
        text = found.group(1)
    value = re.search(rf'data-figure="{figure}">(.*?)</d[dt]>|data-figure="{figure}">(.*?)</td>', text, re.S)
    assert value, f"no figure {figure}"
    return " ".join(unescape(value.group(1) or value.group(2)).split())


def deliver(console: Console, delivery_id: int) -> str:
    """What the worker does with one delivery now (a fresh handler: no cached circuit)."""
    return DeliveryHandler(console.runtime).handle(delivery_id).outcome


def test_a_viewer_sees_every_connector_state_but_cannot_pause_one(console: Console, office: FakeBackOffice) -> None:
    viewer = console.signed_in_as("westvale-viewer")
    listed = viewer.get("/console/connectors")
    assert listed.status_code == 200
    assert '<a class="govuk-service-navigation__link" href="/console/connectors" aria-current="page">Connectors</a>' in listed.text
    for name in ("crm", "garden-waste", "waste", "feedback-email"):
        assert cell(listed.text, "circuit", name) == "closed" and cell(listed.text, "paused", name) == "no"
    assert cell(listed.text, "last_success", "crm") == "never" and cell(listed.text, "hour", "crm") == "no attempts"
    page = viewer.get("/console/connectors/crm")
    assert page.status_code == 200 and "<h1 class=\"govuk-heading-l\">crm</h1>" in page.text
    assert "Pause crm" not in page.text and "Preview a mapping" not in page.text  # no buttons for a viewer
    token = csrf(page)  # the sign-out form's: a valid token, still not the operator role
    for action in ("pause", "check", "preview"):
        refused = viewer.post(f"/console/connectors/crm/{action}", data={"csrf_token": token, "mapping": "missed-bin-collection", "sample": "general-uprn.json"})
        assert refused.status_code == 403 and "This needs the operator role" in refused.text
    assert "paused" not in cell(viewer.get("/console/connectors/crm").text, "paused") and office.received == []


def test_a_pause_without_the_forms_csrf_token_is_refused(console: Console) -> None:
    operator = console.signed_in_as("ict-operator")
    page = operator.get("/console/connectors/crm")
    assert "Pause crm" in page.text
    for data in ({"back": "x"}, {"csrf_token": "not-" + csrf(page)}):
        refused = operator.post("/console/connectors/crm/pause", data=data)
        assert refused.status_code == 403 and "This form has expired" in refused.text
    assert cell(operator.get("/console/connectors/crm").text, "paused") == "no"


def test_another_councils_connector_is_not_found(console: Console) -> None:
    garden = console.runtime.config.connectors["garden-waste"]
    console.runtime.config.connectors["garden-waste"] = garden.model_copy(update={"tenants": ("eastmoor",)})
    westvale = console.signed_in_as("westvale-admin")
    token = csrf(westvale.get("/console/connectors"))
    assert 'data-name="garden-waste"' not in westvale.get("/console/connectors").text
    assert westvale.get("/console/connectors/garden-waste").status_code == 404
    for action in ("pause", "resume", "check", "preview"):
        answer = westvale.post(f"/console/connectors/garden-waste/{action}", data={"csrf_token": token})
        assert answer.status_code == 404 and "Connector not found" in answer.text
    assert westvale.get("/console/connectors/no-such").status_code == 404
    # eastmoor's own operator may pause it, as the admin API allows
    eastmoor = console.signed_in_as("eastmoor-operator")
    paused = eastmoor.post("/console/connectors/garden-waste/pause", data={"csrf_token": csrf(eastmoor.get("/console/connectors/garden-waste"))})
    assert paused.status_code == 303
    # but not a connector every council shares (the admin API's own rule, its own words)
    shared = eastmoor.post("/console/connectors/crm/pause", data={"csrf_token": csrf(eastmoor.get("/console/connectors/crm"))})
    assert shared.status_code == 403 and "also carries other councils" in unescape(shared.text)


def test_pausing_holds_the_workers_deliveries_back_and_resuming_lets_them_go(console: Console, office: FakeBackOffice) -> None:
    operator = console.signed_in_as("ict-operator")
    paused = operator.post("/console/connectors/crm/pause", data={"csrf_token": csrf(operator.get("/console/connectors/crm"))})
    assert paused.status_code == 303 and paused.headers["location"] == "/console/connectors/crm?done=paused"
    page = operator.get(paused.headers["location"])
    assert "crm is paused" in page.text and cell(page.text, "paused").startswith("paused at ") and cell(page.text, "paused").endswith("by staff:ict-operator")
    reference = console.submit("westvale", GENERAL)
    delivery = console.delivery_ids(reference)["crm"]
    assert deliver(console, delivery) == "deferred"
    assert console.state(delivery) == "pending" and office.received == []
    assert cell(operator.get("/console/connectors").text, "waiting", "crm") == "1"

    resumed = operator.post("/console/connectors/crm/resume", data={"csrf_token": csrf(page)})
    assert resumed.status_code == 303 and "crm is resumed" in operator.get(resumed.headers["location"]).text
    time.sleep(1.1)  # the deferral made while paused is over
    assert deliver(console, delivery) == "delivered"
    assert console.state(delivery) == "delivered" and len(office.received) == 1
    listed = operator.get("/console/connectors").text
    assert cell(listed, "waiting", "crm") == "0" and cell(listed, "last_success", "crm") != "never"
    assert cell(listed, "hour", "crm") == "0% (0 of 1)"
    trail = [(e["action"], e["actor"], e["target"]) for e in audit.entries(console.runtime.engine) if e["action"].startswith("connector.")]
    assert trail == [("connector.pause", "staff:ict-operator", "connector:crm"), ("connector.resume", "staff:ict-operator", "connector:crm")]


def test_a_failure_shows_its_time_and_reason_without_the_credential(console: Console, office: FakeBackOffice) -> None:
    office.fail_next(503)
    reference = console.submit("westvale", GENERAL)
    assert deliver(console, console.delivery_ids(reference)["crm"]) == "retrying"
    page = console.signed_in_as("westvale-viewer").get("/console/connectors/crm").text
    failure = cell(page, "last_failure")
    assert "UTC: " in failure and "503" in failure
    assert cell(page, "hour") == "100% (1 of 1)" and cell(page, "day") == "100% (1 of 1)"
    assert console.runtime.secrets.env("CRM_API_TOKEN") not in page


def test_test_connection_shows_the_answer_and_its_time_and_never_a_secret(console: Console, office: FakeBackOffice) -> None:
    operator = console.signed_in_as("ict-operator")
    checked = operator.post("/console/connectors/crm/check", data={"csrf_token": csrf(operator.get("/console/connectors/crm"))})
    assert checked.status_code == 200
    result = " ".join(unescape(re.search(r'<div class="govuk-inset-text" id="checked">(.*?)</div>', checked.text, re.S).group(1)).split())  # type: ignore[union-attr]
    assert re.fullmatch(r"<p class=\"govuk-body\"><strong>Connection works</strong> in \d+ ms: .+</p>", result), result
    [probe] = office.received
    assert probe.body == b"" and probe.headers["authorization"].startswith("Bearer ")
    assert probe.headers["authorization"].removeprefix("Bearer ") not in checked.text
    down = operator.post("/console/connectors/garden-waste/check", data={"csrf_token": csrf(checked)})
    assert "Connection failed" in down.text and "cannot reach" in down.text
    assert console.runtime.secrets.env("GARDEN_WASTE_API_TOKEN") not in down.text


def test_the_preview_is_exactly_the_body_the_worker_sends_for_the_same_sample(console: Console, office: FakeBackOffice) -> None:
    # both in one minute: the mapping writes the time received to the minute
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    with time_machine.travel(start, tick=True):
        admin = console.signed_in_as("westvale-admin")
        page = admin.get("/console/connectors/crm")
        assert '<option value="missed-bin-collection">' in page.text and "general-uprn.json" in page.text
        shown = admin.post("/console/connectors/crm/preview",
                           data={"csrf_token": csrf(page), "mapping": "missed-bin-collection", "sample": "general-uprn.json", "payload": ""})
        reference = console.submit("westvale", GENERAL)
    assert shown.status_code == 200, shown.text
    body = unescape(re.search(r'<pre class="console-preview" id="preview-body"[^>]*>(.*?)</pre>', shown.text, re.S).group(1))  # type: ignore[union-attr]
    assert "REST/JSON: POST " + office.url in unescape(shown.text)
    assert "Bearer [secret]" in shown.text and console.runtime.secrets.env("CRM_API_TOKEN") not in shown.text
    assert office.received == []  # a preview sends nothing

    assert deliver(console, console.delivery_ids(reference)["crm"]) == "delivered"
    [sent] = office.received
    assert sent.body.decode().replace(reference, PREVIEW_REFERENCE) == body
    assert json.loads(body)["client_unique_identifier"] == f"{PREVIEW_REFERENCE}/crm"


def test_the_preview_shows_the_record_a_recording_connector_receives_for_the_same_sample(console: Console) -> None:
    crm = console.runtime.config.connectors["crm"]
    console.runtime.config.connectors["crm"] = crm.model_copy(update={"type": "recording", "options": {}})
    RecordingConnector.clear("crm")
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    with time_machine.travel(start, tick=True):
        admin = console.signed_in_as("westvale-admin")
        shown = admin.post("/console/connectors/crm/preview", data={
            "csrf_token": csrf(admin.get("/console/connectors/crm")), "mapping": "missed-bin-collection", "sample": "", "payload": json.dumps(GENERAL)})
        reference = console.submit("westvale", GENERAL)
    assert shown.status_code == 200, shown.text
    body = unescape(re.search(r'<pre class="console-preview" id="preview-body"[^>]*>(.*?)</pre>', shown.text, re.S).group(1))  # type: ignore[union-attr]
    assert RecordingConnector.received("crm") == []
    assert deliver(console, console.delivery_ids(reference)["crm"]) == "delivered"
    [received] = RecordingConnector.received("crm")
    sent = json.dumps(received.record, ensure_ascii=False, indent=2)
    assert sent.replace(reference, PREVIEW_REFERENCE) == body
    RecordingConnector.clear("crm")


def test_bad_pasted_json_gets_an_error_summary_naming_the_field(console: Console, office: FakeBackOffice) -> None:
    operator = console.signed_in_as("ict-operator")
    token = csrf(operator.get("/console/connectors/crm"))
    bad = operator.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "missed-bin-collection", "payload": '{"uprn": '})
    assert bad.status_code == 400 and bad.text.count('class="govuk-error-summary"') == 1
    assert '<li><a href="#payload">Pasted JSON is not valid JSON: Expecting value at line 1, column 10</a></li>' in bad.text
    assert '{&#34;uprn&#34;: </textarea>' in bad.text  # what was pasted is kept to be corrected
    wrong = operator.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "missed-bin-collection", "payload": '{"bin_type": 7}'})
    assert wrong.status_code == 400 and 'href="#payload">The answers do not fit missed-bin-collection: /bin_type: ' in wrong.text
    listed = operator.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "missed-bin-collection", "payload": "[1]"})
    assert listed.status_code == 400 and "Pasted JSON must be an object" in listed.text
    nothing = operator.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "no-such-form"})
    assert nothing.status_code == 400 and 'href="#mapping">Choose a mapping to crm from the list' in nothing.text
    elsewhere = operator.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "missed-bin-collection", "sample": "../../config/clients.yaml"})
    assert elsewhere.status_code == 400 and 'href="#sample">Choose one of the samples of missed-bin-collection' in elsewhere.text
    assert office.received == []


def test_previews_of_soap_and_e_mail_connectors_hide_credentials(console: Console) -> None:
    operator = console.signed_in_as("ict-operator")
    token = csrf(operator.get("/console/connectors/waste"))
    soap = operator.post("/console/connectors/waste/preview", data={"csrf_token": token, "mapping": "bulky-waste-collection", "sample": sample_of("bulky-waste-collection")})
    assert soap.status_code == 200, soap.text
    assert "ServiceRequest_Create" in soap.text and "Envelope" in soap.text and "Basic [secret]" in soap.text
    mail = operator.post("/console/connectors/feedback-email/preview", data={"csrf_token": token, "mapping": "complaint-or-compliment", "sample": sample_of("complaint-or-compliment")})
    assert mail.status_code == 200, mail.text
    assert "X-Hub-Reference: " + PREVIEW_REFERENCE in mail.text and "record.json" in mail.text


def sample_of(form: str) -> str:
    return sorted(p.name for p in (Settings().schemas_dir / form / "samples").glob("*.json"))[0]


def test_the_pages_answer_a_browser_without_a_session_with_sign_in(console: Console) -> None:
    browser = console.browser()
    for path in ("/console/connectors", "/console/connectors/crm"):
        answer = browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/sign-in"
    refused = browser.post("/console/connectors/crm/pause", data={"csrf_token": "x"})
    assert refused.status_code == 303 and refused.headers["location"] == "/console/sign-in"


def test_only_the_forms_a_council_offers_are_offered_for_preview(console: Console) -> None:
    westvale = console.signed_in_as("westvale-admin")
    page = westvale.get("/console/connectors/crm").text
    assert '<option value="missed-bin-collection">' in page and 'value="govuk-all-question-types"' not in page
    token = csrf(westvale.get("/console/connectors/crm"))
    refused = westvale.post("/console/connectors/crm/preview", data={"csrf_token": token, "mapping": "govuk-all-question-types", "payload": "{}"})
    assert refused.status_code == 400 and 'href="#mapping">Choose a mapping to crm from the list' in refused.text
    platform = console.signed_in_as("ict-operator").get("/console/connectors/crm").text
    assert 'value="govuk-all-question-types"' in platform
