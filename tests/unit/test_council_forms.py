"""The everyday council forms: moving home for council tax, benefit changes, complaints and
compliments, and the general enquiry built on LocalGov Drupal's Liberty Create example webform."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from hub.config.settings import Settings
from hub.intake.forms import load_forms
from tests.support.realworld import realworld

SCHEMAS = Settings().schemas_dir
FORMS = load_forms(SCHEMAS)
LIBERTY_WEBFORM = (
    "localgov-liberty-create", "modules", "localgov_forms_example_liberty_create_integration",
    "config", "optional", "webform.webform.liberty_create_api_example.yml",
)


def sample(form_id: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def errors(form_id: str, payload: Any) -> dict[str, str]:
    form = FORMS.get(form_id)
    assert form is not None
    return {e.pointer: e.message for e in form.errors(payload)}


@pytest.mark.parametrize("rating", [0, 6, 3.5, "5"])
def test_a_rating_must_be_a_whole_number_from_1_to_5(rating: Any) -> None:
    payload = {**sample("complaint-or-compliment", "compliment-library"), "rating": rating}
    assert errors("complaint-or-compliment", payload) == {"/rating": "Choose a rating from 1 (very dissatisfied) to 5 (very satisfied)"}


def test_a_complaint_must_say_what_the_resident_wants_but_a_compliment_need_not() -> None:
    complaint = sample("complaint-or-compliment", "complaint-missed-bins")
    del complaint["desired_outcome"]
    assert errors("complaint-or-compliment", complaint) == {"/desired_outcome": "What you would like us to do is required"}
    assert errors("complaint-or-compliment", {**complaint, "feedback_type": "comment"}) == {}


def test_an_empty_contact_section_is_refused_rather_than_taken_as_anonymous() -> None:
    payload = {**sample("complaint-or-compliment", "comment-anonymous"), "contact": {}}
    assert errors("complaint-or-compliment", payload) == {"/contact": "Give at least one contact detail, or leave this section out"}


def test_income_amounts_are_numbers_of_pounds_and_pence_never_below_zero() -> None:
    payload = sample("benefits-change-of-circumstances", "new-job-income")
    for amount in (-10, "1184.52", 12.345):
        changed = copy.deepcopy(payload)
        changed["income"][0]["amount"] = amount
        assert errors("benefits-change-of-circumstances", changed) == {
            "/income/0/amount": "Enter the amount in pounds and pence, like 412.50, with no minus sign"
        }
    payload["savings"] = -1
    assert list(errors("benefits-change-of-circumstances", payload)) == ["/savings"]


def test_a_change_must_be_one_of_the_known_kinds_with_a_real_date() -> None:
    payload = sample("benefits-change-of-circumstances", "partner-moved-in")
    payload["changes"] = [{"kind": "lottery_win", "date": "2026-02-30"}]
    assert errors("benefits-change-of-circumstances", payload) == {
        "/changes/0/kind": "Select what has changed",
        "/changes/0/date": "The date of the change must be a real date, like 23 11 2026",
    }


def test_the_claimant_must_confirm_the_declaration() -> None:
    payload = {**sample("benefits-change-of-circumstances", "partner-moved-in"), "declaration": False}
    assert errors("benefits-change-of-circumstances", payload) == {
        "/declaration": "Confirm that the information you have given is correct and complete"
    }


def test_moving_home_needs_both_addresses_each_by_uprn_or_typed_with_a_postcode() -> None:
    payload = sample("council-tax-moving-home", "moving-out-single")
    payload["new_address"] = {"line1": "9 Ffordd y Castell", "town": "Caernarfon", "postcode": "LL55"}
    assert errors("council-tax-moving-home", payload) == {"/new_address/postcode": "Enter a real postcode, like SW1A 1AA"}
    del payload["previous_address"]
    assert "/previous_address" in errors("council-tax-moving-home", payload)


def test_moving_home_lists_at_least_one_person_with_a_date_of_birth() -> None:
    payload = {**sample("council-tax-moving-home", "moving-in-uprn"), "occupants": []}
    assert errors("council-tax-moving-home", payload) == {"/occupants": "Add between 1 and 10 people who are moving, including you"}


def test_the_general_enquiry_has_exactly_the_input_fields_of_the_localgov_liberty_create_webform() -> None:
    webform = yaml.safe_load(realworld(*LIBERTY_WEBFORM).read_text(encoding="utf-8"))
    elements = yaml.safe_load(webform["elements"])
    # `value` elements are the CRM's answer shown back to the resident, not something they type
    inputs = {name for name, element in elements.items() if element["#type"] != "value"}
    schema = FORMS.get("general-enquiry")
    assert schema is not None
    assert set(schema.schema["properties"]) == inputs
    required = {name for name, element in elements.items() if element.get("#required")}
    assert set(schema.schema["required"]) == required
    assert schema.schema["properties"]["phone"]["pattern"] == elements["phone"]["#pattern"]


@pytest.mark.parametrize(("phone", "valid"), [("07700900982", True), ("+44 7700 900982", True), ("(07700) 900 982", True), ("01632 960001", False)])
def test_the_general_enquiry_phone_is_a_mobile_for_texts_as_in_the_webform(phone: str, valid: bool) -> None:
    payload = {**sample("general-enquiry", "question-only"), "phone": phone}
    assert (errors("general-enquiry", payload) == {}) is valid


def test_the_general_enquiry_addresses_are_localgov_uk_addresses_with_a_uprn() -> None:
    payload = sample("general-enquiry", "pavement-with-photo")
    payload["case_address"]["uprn"] = "12345"
    payload["residential_address"].pop("postcode")
    assert errors("general-enquiry", payload) == {
        "/case_address/uprn": "Enter a 12-digit UPRN, like 100023336956",
        "/residential_address/postcode": "Postcode is required",
    }


@pytest.mark.parametrize(
    ("form_id", "name", "personal", "not_personal"),
    [
        ("council-tax-moving-home", "moving-in-uprn", ["Priya", "priya.raman@example.org", "07700 900415", "42 Kingsland Road", "1989-09-17", "Arjun"], ["moving_in", "private_tenant"]),
        ("benefits-change-of-circumstances", "new-job-income", ["Kerry-Ann", "AB 12 34 56 C", "1984-11-09", "Started a new job at the hospital, 22 hours a week."], ["HB20345678", "earnings"]),
        ("complaint-or-compliment", "complaint-missed-bins", ["Oluwaseun", "seun.adeyemi@example.org", "07700 900654", "Collect the recycling this week and tell me why the returns did not happen."], ["bins_and_recycling"]),
        ("general-enquiry", "pavement-with-photo", ["Rhiannon", "07700900982", "17 Larch Close", "YO8 7HD", "kerb.jpg"], ["100023336961", "Eastmoor Central"]),
    ],
)
def test_personal_details_are_marked_so_they_never_reach_a_log_line(form_id: str, name: str, personal: list[str], not_personal: list[str]) -> None:
    form = FORMS.get(form_id)
    assert form is not None
    values = set(form.pii_values(sample(form_id, name)))
    assert set(personal) <= values
    assert not set(not_personal) & values
