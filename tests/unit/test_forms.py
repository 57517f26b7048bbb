import json
from pathlib import Path

import pytest

from hub.config.settings import Settings
from hub.errors import SchemaError
from hub.intake.forms import load_forms

SCHEMAS = Settings().schemas_dir
FORMS = load_forms(SCHEMAS)


def sample(form_id: str, name: str) -> dict:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text())


def errors(form_id: str, payload: object) -> dict[str, str]:
    form = FORMS.get(form_id)
    assert form is not None
    return {e.pointer: e.message for e in form.errors(payload)}


def test_a_valid_sample_has_no_errors() -> None:
    assert errors("missed-bin-collection", sample("missed-bin-collection", "general-uprn")) == {}


def test_every_failing_field_is_listed_with_its_pointer_and_a_plain_message() -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    del payload["email"]
    payload["bin_type"] = "compost"
    payload["collection_date"] = "yesterday"
    payload["colour"] = "blue"
    found = errors("missed-bin-collection", payload)
    assert found["/email"] == "Email address is required"
    assert found["/bin_type"] == "Select which bin was missed"
    assert found["/collection_date"].startswith("Collection date must be a real date")
    assert found[""] == "colour: not a field of this form"
    assert len(found) == 4


def test_a_wrong_uprn_is_named_rather_than_the_whole_address() -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    payload["address"] = {"uprn": "12345"}
    assert errors("missed-bin-collection", payload) == {"/address/uprn": "Enter a 12-digit UPRN, like 100023336956"}


def test_welsh_names_are_accepted() -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    payload["name"] = {"first": "Siân", "last": "Ŵyn-Llŷr"}
    assert errors("missed-bin-collection", payload) == {}


def test_a_body_that_is_not_an_object_is_refused_plainly() -> None:
    assert errors("missed-bin-collection", [1, 2]) == {"": "The submission must be a group of fields"}


def test_personal_values_are_found_at_x_pii_paths_and_nothing_else() -> None:
    form = FORMS.get("missed-bin-collection")
    assert form is not None
    payload = sample("missed-bin-collection", "garden-postcode")
    values = set(form.pii_values(payload))
    assert payload["email"] in values
    assert payload["name"]["first"] in values
    assert payload["address"]["postcode"] in values
    assert payload["bin_type"] not in values


def test_a_schema_that_does_not_compile_is_reported_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "1.json").write_text('{"type": "objekt"}')
    with pytest.raises(SchemaError, match=r"broken/1\.json: schema does not compile"):
        load_forms(tmp_path)


def test_the_newest_version_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "1.json").write_text('{"title": "one"}')
    (tmp_path / "f" / "2.json").write_text('{"title": "two"}')
    forms = load_forms(tmp_path)
    assert forms.get("f").version == 2  # type: ignore[union-attr]
    assert forms.get("f", 1).title == "one"  # type: ignore[union-attr]
    assert forms.get("f", 3) is None
