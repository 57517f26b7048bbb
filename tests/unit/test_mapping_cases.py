"""Every mapping case under `mappings/` holds, and every form sample is valid against its schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hub.delivery.mapping import RecordMapping, load_mappings
from hub.delivery.mapping_cases import MappingCase, mapping_cases
from hub.intake.forms import schema_validator

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
SCHEMAS = ROOT / "schemas"
CASES = mapping_cases(MAPPINGS, SCHEMAS)
SAMPLES = sorted(SCHEMAS.glob("*/samples/*.json"))


def schema_path(form_id: str) -> Path:
    return max((SCHEMAS / form_id).glob("[0-9]*.json"), key=lambda p: int(p.stem))


def schema_for(form_id: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(form_id).read_text(encoding="utf-8"))
    return schema


def validator_for(form_id: str, validate_formats: bool = False) -> Any:
    """The form's validator as the hub compiles it (relative `$ref`s resolve beside the file)."""
    return schema_validator(schema_for(form_id), schema_path(form_id), validate_formats)


@pytest.fixture(scope="module")
def mappings() -> dict[tuple[str, str], RecordMapping]:
    return load_mappings(MAPPINGS)


def test_there_are_cases_for_every_mapping(mappings: dict[tuple[str, str], RecordMapping]) -> None:
    assert {case.key for case in CASES} == set(mappings)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_mapping_turns_the_case_payload_into_exactly_the_expected_record(
    case: MappingCase, mappings: dict[tuple[str, str], RecordMapping]
) -> None:
    assert mappings[case.key].apply(case.payload, case.meta, case.attachments) == case.expected


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_case_payloads_are_valid_against_their_form_schema(case: MappingCase) -> None:
    validator = validator_for(case.key[0], validate_formats=True)
    assert [error.message for error in validator.iter_errors(case.payload)] == []


def test_every_form_has_at_least_three_samples() -> None:
    forms = sorted(path.parent for path in SCHEMAS.glob("*/[0-9]*.json"))
    assert forms and all(len(list((form / "samples").glob("*.json"))) >= 3 for form in forms)


@pytest.mark.parametrize("validate_formats", [False, True], ids=["structure", "with-formats"])
@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{p.parts[-3]}/{p.stem}" for p in SAMPLES])
def test_sample_is_valid_against_its_schema(sample: Path, validate_formats: bool) -> None:
    validator = validator_for(sample.parts[-3], validate_formats=validate_formats)
    payload = json.loads(sample.read_text(encoding="utf-8"))
    assert [error.message for error in validator.iter_errors(payload)] == []


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{p.parts[-3]}/{p.stem}" for p in SAMPLES])
def test_an_invalid_copy_of_the_sample_is_rejected(sample: Path) -> None:
    schema = schema_for(sample.parts[-3])
    validator = validator_for(sample.parts[-3])
    payload = json.loads(sample.read_text(encoding="utf-8"))
    assert not validator.is_valid({**copy.deepcopy(payload), "unexpected_field": "x"})
    for required in schema["required"]:
        assert not validator.is_valid({k: v for k, v in payload.items() if k != required}), required


@pytest.mark.parametrize(
    ("form_id", "sample", "change", "pointer"),
    [
        ("missed-bin-collection", "general-uprn", {"address": {"uprn": "23336956"}}, "/address"),
        ("missed-bin-collection", "recycling-postcode", {"address": {"line1": "1 Main St", "town": "Bangor", "postcode": "BT99"}}, "/address"),
        ("missed-bin-collection", "general-uprn", {"bin_type": "purple"}, "/bin_type"),
        ("missed-bin-collection", "general-uprn", {"phone": "12345"}, "/phone"),
        ("missed-bin-collection", "general-uprn", {"name": {"first": "R2D2", "last": "Droid"}}, "/name/first"),
        ("missed-bin-collection", "general-uprn", {"notes": "x" * 1001}, "/notes"),
        ("report-fly-tipping", "coordinates-anonymous", {"location": {"description": "Somewhere"}}, "/location"),
        ("report-fly-tipping", "coordinates-anonymous", {"location": {"latitude": 40.0, "longitude": -5.0, "description": "Spain"}}, "/location/latitude"),
        ("report-fly-tipping", "coordinates-anonymous", {"size": "skip"}, "/size"),
        ("report-fly-tipping", "uprn-with-reporter", {"reporter": {}}, "/reporter"),
    ],
)
def test_schemas_reject_bad_fields_at_their_json_pointer(
    form_id: str, sample: str, change: dict[str, Any], pointer: str
) -> None:
    validator = validator_for(form_id)
    payload = json.loads((SCHEMAS / form_id / "samples" / f"{sample}.json").read_text(encoding="utf-8"))
    pointers = {"/" + "/".join(map(str, error.instance_path)) for error in validator.iter_errors({**payload, **change})}
    assert pointer in pointers


@pytest.mark.parametrize(("form_id", "value"), [("missed-bin-collection", "not-an-email"), ("report-fly-tipping", "x@")])
def test_formats_are_asserted_when_switched_on(form_id: str, value: str) -> None:
    validator = validator_for(form_id, validate_formats=True)
    sample = sorted((SCHEMAS / form_id / "samples").glob("*.json"))[0]
    payload = json.loads(sample.read_text(encoding="utf-8"))
    if form_id == "missed-bin-collection":
        payload["email"] = value
    else:
        payload["seen_at"] = value
    assert not validator.is_valid(payload)


def test_every_personal_field_is_marked_pii() -> None:
    def marked(schema: Any, found: set[str], prefix: str = "") -> None:
        if isinstance(schema, dict):
            for key, sub in schema.get("properties", {}).items():
                if isinstance(sub, dict) and sub.get("x-pii"):
                    found.add(f"{prefix}/{key}")
                marked(sub, found, f"{prefix}/{key}")
            for branch in schema.get("oneOf", []) + schema.get("anyOf", []):
                marked(branch, found, prefix)

    bins: set[str] = set()
    marked(schema_for("missed-bin-collection"), bins)
    assert {"/name/first", "/name/last", "/email", "/phone", "/address/line1", "/address/postcode", "/notes"} <= bins
    tipping: set[str] = set()
    marked(schema_for("report-fly-tipping"), tipping)
    assert {"/reporter/name/first", "/reporter/email", "/reporter/phone", "/location/description"} <= tipping
