"""GOV.UK Forms submissions on the embedded hub: the JSON forms-runner makes for GOV.UK's own
"all question types" form, checked against GOV.UK's JSON submission schema, stored and delivered to the CRM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.api import problems
from hub.api.routes import govuk_forms as govuk
from hub.intake.accept import Intake
from tests.support.embedded import EmbeddedHub
from tests.support.realworld import realworld

GOVUK = realworld("govuk-forms", module_level=True)
FORM = json.loads((GOVUK / "all_question_types_form.json").read_text())
SCHEMA = jsonschema_rs.validator_for(json.loads((GOVUK / "json_submission_schema_v1.json").read_text()), validate_formats=True)
# What a resident typed, by GOV.UK answer_type; shaped as forms-runner's show_answer_in_json gives it
ANSWERS: dict[str, dict[str, Any]] = {
    "text": {"answer_text": "Blocked drain outside the library"},
    "number": {"answer_text": "3"},
    "address": {"address1": "12 Station Road", "address2": "", "town_or_city": "Eastmoor", "county": "", "postcode": "EM1 4TB",
                "answer_text": "12 Station Road, Eastmoor, EM1 4TB"},
    "email": {"answer_text": "priya.raman@example.org"},
    "date": {"answer_text": "23/11/2026"},
    "national_insurance_number": {"answer_text": "QQ 12 34 56 C"},
    "phone_number": {"answer_text": "07700 900 215"},
    "selection": {"selections": ["Option 1", "Option 3"], "answer_text": "Option 1, Option 3"},
}


def submission(reference: str = "NR7VKD6X") -> dict[str, Any]:
    """The JSON forms-runner sends for FORM: one answer per question page, in step order."""
    answers = []
    for step in sorted(FORM["steps"], key=lambda s: s["position"]):
        data = step["data"]
        long_text = data["answer_type"] == "text" and (data["answer_settings"] or {}).get("input_type") == "long_text"
        answer = {"answer_text": "Water pools across the pavement.\nTwo weeks now."} if long_text else ANSWERS[data["answer_type"]]
        answers.append({"question_id": str(step["id"]), "question_text": data["question_text"], **answer})
    return {
        "form_name": FORM["name"],
        "form_id": FORM["form_id"],
        "submission_reference": reference,
        "submitted_at": "2026-11-23T09:31:12.482Z",
        "answers": answers,
    }


def post(hub: EmbeddedHub, body: Any, key: str | None = None, **headers: str) -> Any:
    return hub.client.post("/v1/govuk-forms/submissions", json=body, headers={"Authorization": f"Bearer {key or hub.key}", **headers})


def test_the_built_submission_is_a_valid_govuk_forms_submission() -> None:
    body = submission()
    assert [e.message for e in SCHEMA.iter_errors(body)] == []
    assert len(body["answers"]) == len(FORM["steps"]) == 9


def test_a_govuk_submission_is_stored_and_reaches_the_crm(hub: EmbeddedHub) -> None:
    reply = post(hub, submission())
    assert reply.status_code == 202, reply.text
    receipt = reply.json()
    assert set(receipt) == {"reference", "status_url", "received_at"} and reply.headers["location"] == receipt["status_url"]
    status = hub.wait_until_settled(receipt["reference"])
    assert status["form_id"] == "govuk-all-question-types"
    [delivery] = status["deliveries"]
    assert delivery["connector"] == "crm" and delivery["state"] == "delivered"
    case = hub.crm.cases()[0]
    item = case["record"]["data"][0]
    assert delivery["external_reference"] == case["reference"]
    assert item["source_system"] == "GOV.UK Forms" and item["email_address"] == "priya.raman@example.org"
    assert "GOV.UK Forms submission NR7VKD6X" in item["details"]
    assert "Selection from a list of options: Option 1, Option 3" in item["details"]


def test_forms_runner_resending_a_submission_gets_the_first_reference(hub: EmbeddedHub) -> None:
    first = post(hub, submission()).json()["reference"]
    assert post(hub, submission()).json()["reference"] == first
    changed = submission()
    changed["answers"][0]["answer_text"] = "Something else"
    reply = post(hub, changed)
    assert reply.status_code == 409 and reply.json()["reference"] == first


def test_a_body_that_is_not_a_govuk_submission_lists_its_faults(hub: EmbeddedHub) -> None:
    body = submission()
    body["submitted_at"] = "yesterday"
    del body["answers"][0]["question_id"]
    reply = post(hub, body)
    assert reply.status_code == 422 and reply.headers["content-type"] == "application/problem+json"
    assert {e["pointer"] for e in reply.json()["errors"]} == {"/submitted_at", "/answers/0/question_id"}
    assert "not a GOV.UK Forms JSON submission" in reply.json()["detail"]


def test_a_form_the_hub_does_not_know_is_not_found(hub: EmbeddedHub) -> None:
    reply = post(hub, {**submission(), "form_id": "8071"})
    assert reply.status_code == 404 and "GOV.UK form 8071" in reply.json()["detail"]


def test_a_submission_without_a_form_id_is_refused(hub: EmbeddedHub) -> None:
    body = submission()
    del body["form_id"]
    reply = post(hub, body)
    assert reply.status_code == 422 and reply.json()["errors"][0]["pointer"] == "/form_id"


def test_the_same_api_key_as_intake_is_needed(hub: EmbeddedHub) -> None:
    assert post(hub, submission(), key="not-a-key").status_code == 401
    assert hub.client.post("/v1/govuk-forms/submissions", json=submission()).status_code == 401
    # westvale's portal may post only missed-bin-collection
    assert post(hub, submission(), key=hub.westvale_key).status_code == 404


def test_only_json_is_accepted(hub: EmbeddedHub) -> None:
    reply = hub.client.post("/v1/govuk-forms/submissions", content=b"form_id=1", headers={
        "Authorization": f"Bearer {hub.key}", "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 415


def test_without_govuks_schema_the_endpoint_says_so_and_the_hub_still_starts(hub: EmbeddedHub, tmp_path: Path) -> None:
    app = FastAPI()
    app.state.runtime, app.state.relay, app.state.intake = hub.runtime, None, Intake(hub.runtime, None)
    problems.install(app)
    # a council's own standards folder (HUB_STANDARDS_DIR) without GOV.UK's schema in it
    app.include_router(govuk.create_router(tmp_path / "forms.yaml", standards_dir=tmp_path / "standards"))
    with TestClient(app) as client:
        reply = client.post("/v1/govuk-forms/submissions", json=submission(), headers={"Authorization": f"Bearer {hub.key}"})
    assert reply.status_code == 503 and "schema is missing" in reply.json()["detail"]


def test_the_form_map_sends_an_id_to_its_hub_form_and_others_to_govuk_id(tmp_path: Path) -> None:
    forms = tmp_path / "forms.yaml"
    forms.write_text('forms:\n  "1": govuk-all-question-types\n')
    mapped = govuk.load_forms_map(forms)
    assert mapped.hub_form("1") == "govuk-all-question-types" and mapped.hub_form("77") == "govuk-77"
    assert govuk.load_forms_map(tmp_path / "absent.yaml").hub_form("1") == "govuk-1"
