"""Where a form keeps personal data: the resident's e-mail address for the subject index, x-pii
fields masked for staff and removed on erasure, and validation messages that never quote them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.config.settings import Settings
from hub.intake.forms import compile_form, load_forms
from hub.privacy.personal_fields import strings_at

SCHEMAS = Settings().schemas_dir
FORMS = load_forms(SCHEMAS)


def sample(form_id: str, name: str) -> Any:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text())


def test_every_form_with_an_email_field_links_each_sample_that_gives_an_address() -> None:
    with_email = [f for f in FORMS if f.email_paths]
    assert {f.form_id for f in with_email} >= {
        "missed-bin-collection", "report-fly-tipping", "complaint-or-compliment", "planning-comment",
        "benefits-change-of-circumstances", "council-tax-moving-home", "rent-arrears-payment-plan",
    }
    for form in with_email:
        for path in sorted(form.path.parent.glob("samples/*.json")):
            payload = json.loads(path.read_text())
            addresses = [v for p in form.pii_paths for v in strings_at(payload, p) if "@" in v]
            assert [value for _, value in form.subject_identifiers(payload)] == addresses, path


def test_the_address_is_found_at_any_depth_once_and_only_as_an_email() -> None:
    form = FORMS.get("report-fly-tipping")
    assert form is not None
    payload = sample("report-fly-tipping", "uprn-with-reporter")
    assert form.subject_identifiers(payload) == [("email", "dafydd.llewelyn@example.org")]
    assert form.subject_identifiers(sample("report-fly-tipping", "coordinates-anonymous")) == []


def test_an_email_answer_picked_by_an_if_then_is_found_as_gov_uk_forms_send_it(tmp_path: Path) -> None:
    # GOV.UK Forms answers are a list; only the answer to the e-mail question is an address
    schema = json.loads((SCHEMAS / "govuk-all-question-types" / "1.json").read_text())
    items = schema["properties"]["answers"]["items"]
    items["if"] = {"required": ["question_id"], "properties": {"question_id": {"const": "4"}}}
    items["then"] = {"properties": {"answer_text": {"format": "email"}}}
    (tmp_path / "1.json").write_text(json.dumps(schema))
    form = compile_form("govuk-all-question-types", 1, tmp_path / "1.json")
    payload = sample("govuk-all-question-types", "every-answer")
    assert form.errors(payload) == []
    assert form.subject_identifiers(payload) == [("email", "priya.raman@example.org")]


def test_an_email_field_outside_x_pii_or_reached_through_a_local_definition(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "$defs": {"Email": {"type": "string", "format": "email"}},
        "properties": {
            "contact": {"x-pii": True, "properties": {"email": {"$ref": "#/$defs/Email"}}},
            "council_inbox": {"type": "string", "format": "email"},
        },
    }
    (tmp_path / "1.json").write_text(json.dumps(schema))
    form = compile_form("f", 1, tmp_path / "1.json")
    payload = {"contact": {"email": " Ann@Example.org "}, "council_inbox": "bins@council.example"}
    # the council's own inbox is not the resident's; the resident's is trimmed, case kept
    assert form.subject_identifiers(payload) == [("email", "Ann@Example.org")]


def test_staff_without_the_caseworker_role_see_every_x_pii_value_hidden_and_the_rest_as_sent() -> None:
    form = FORMS.get("complaint-or-compliment")
    assert form is not None
    payload = sample("complaint-or-compliment", "complaint-missed-bins")
    masked = form.masked(payload)
    assert not set(form.pii_values(payload)) & set(strings_at(masked, ()))
    assert masked["contact"]["email"] == "[hidden]" and masked["what_happened"] == "[hidden]"
    assert masked["feedback_type"] == "complaint" and masked["contact"]["preferred_contact"] == "email"
    assert payload["contact"]["email"] == "seun.adeyemi@example.org"  # the original is untouched


def test_an_erasure_removes_every_x_pii_field_including_in_lists_and_keeps_other_answers() -> None:
    form = FORMS.get("benefits-change-of-circumstances")
    assert form is not None
    payload = sample("benefits-change-of-circumstances", "son-left-rent-rise")
    kept = form.without_personal_data(payload)
    assert form.pii_values(kept) == []
    assert "email" not in kept and "national_insurance_number" not in kept
    assert kept["changes"] == [{"kind": "household_members", "date": "2026-09-30"}, {"kind": "rent", "date": "2026-10-06"}]
    assert [set(m) for m in kept["household_members"]] == [{"relationship", "change", "date"}]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [({"const": "ok-value"}, "Gwenllian Secret-Name"), ({"not": {"const": "x"}}, "x"), ({"minProperties": 3}, {"first": "Gwenllian"})],
)
def test_a_validation_message_never_quotes_an_x_pii_value(tmp_path: Path, keyword: dict[str, Any], value: Any) -> None:
    schema = {"type": "object", "properties": {"name": {"x-pii": True, **keyword}, "ok": {"const": "yes"}}}
    (tmp_path / "1.json").write_text(json.dumps(schema))
    form = compile_form("f", 1, tmp_path / "1.json")
    [error, other] = form.errors({"name": value, "ok": "no"})
    assert error.pointer == "/name" and error.message == "Name is not valid"
    # a field that is not personal keeps the validator's own words
    assert other.pointer == "/ok" and "yes" in other.message


def test_every_council_form_answers_bad_x_pii_values_without_repeating_them() -> None:
    planted = "zz-Planted Value 9f3b"
    for form in FORMS:
        first = next(form.path.parent.glob("samples/*.json")).stem
        for path in (p for p in form.pii_paths if "*" not in p and "**" not in p):
            for value in (planted, [planted], {"nested": planted}, planted * 500):
                payload = sample(form.form_id, first)
                node = payload
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = value
                messages = json.dumps([e.as_dict() for e in form.errors(payload)])
                assert planted not in messages, (form.form_id, path)
