"""The mapping engine: each rule of the mapping file grammar, and each error it raises."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hub.delivery.mapping import RecordMapping, load_mappings
from hub.delivery.mapping_cases import mapping_cases
from hub.errors import ConfigError, MappingError

pytestmark = pytest.mark.unit

META = {
    "reference": "HUB-7K3F9QXM2A",
    "form_id": "test-form",
    "form_version": 1,
    "received_at": "2026-11-23T10:15:00+00:00",
    "tenant": "north-down",
    "connector": "crm",
    "idempotency_key": "HUB-7K3F9QXM2A/crm",
}


def write(directory: Path, body: str, name: str = "test-form.crm.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def mapping(tmp_path: Path, record: str, tables: str = "") -> RecordMapping:
    body = "form: test-form\nconnector: crm\n"
    body += "tables:\n" + textwrap.indent(textwrap.dedent(tables), "  ") if tables else ""
    body += "record:\n" + textwrap.indent(textwrap.dedent(record), "  ")
    return RecordMapping.load(write(tmp_path, body))


def run(tmp_path: Path, record: str, payload: dict[str, Any] | None = None, tables: str = "") -> dict[str, Any]:
    return mapping(tmp_path, record, tables).apply(payload or {}, META)


# -- loading ---------------------------------------------------------------------------


def test_load_reads_form_connector_and_path(tmp_path: Path) -> None:
    loaded = mapping(tmp_path, "a: {const: 1}")
    assert (loaded.form_id, loaded.connector, loaded.path) == ("test-form", "crm", tmp_path / "test-form.crm.yaml")


def test_load_mappings_keys_every_file_by_form_and_connector(tmp_path: Path) -> None:
    write(tmp_path, "form: test-form\nconnector: crm\nrecord: {a: {const: 1}}\n")
    write(tmp_path, "form: test-form\nconnector: waste\nrecord: {a: {const: 2}}\n", "test-form.waste.yaml")
    assert sorted(load_mappings(tmp_path)) == [("test-form", "crm"), ("test-form", "waste")]


def test_a_bare_scalar_in_the_record_is_a_config_error_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test-form\.crm\.yaml:5: record\.b: bare value 'oops'"):
        mapping(tmp_path, "a: {const: 1}\nb: oops\n")


def test_an_unknown_key_in_an_expression_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"test-form\.crm\.yaml:6: record\.a: unknown key 'lookpu'"):
        mapping(tmp_path, "a:\n  path: payload.x\n  lookpu: codes\n")


def test_an_unknown_top_level_key_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "form: test-form\nconnector: crm\nrecrod: {}\n")
    with pytest.raises(ConfigError, match=r":3: unknown key 'recrod'"):
        RecordMapping.load(path)


def test_a_duplicate_key_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r":5: duplicate key 'a'"):
        mapping(tmp_path, "a: {const: 1}\na: {const: 2}\n")


def test_invalid_yaml_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "form: test-form\nconnector: crm\nrecord: {a: [\n")
    with pytest.raises(ConfigError, match=r"test-form\.crm\.yaml:\d+:"):
        RecordMapping.load(path)


def test_a_bad_jmespath_is_a_config_error_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"record\.a: bad JMESPath 'payload\.\[\['"):
        mapping(tmp_path, "a: {path: 'payload.[['}")


def test_an_expression_with_two_sources_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of path, const or a join list"):
        mapping(tmp_path, "a: {path: payload.x, const: 1}")


def test_a_lookup_of_an_undefined_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lookup table 'codes' is not defined"):
        mapping(tmp_path, "a: {path: payload.x, lookup: codes}")


def test_a_file_named_for_another_form_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "form: other-form\nconnector: crm\nrecord: {a: {const: 1}}\n")
    with pytest.raises(ConfigError, match="should be named other-form.crm.yaml"):
        RecordMapping.load(path)


def test_two_files_for_the_same_form_and_connector_are_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "form: test-form\nconnector: crm\nrecord: {a: {const: 1}}\n")
    write(tmp_path, "form: test-form\nconnector: crm\nrecord: {a: {const: 1}}\n", "test-form.crm.yml")
    with pytest.raises(ConfigError, match="already mapped"):
        load_mappings(tmp_path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("a: {path: payload.x, sep: ', '}", "sep and skip_empty only go with join"),
        ("a: {path: payload.x, upper: yes please}", "upper must be true or false"),
        ("a: {path: payload.x, upper: true, lower: true}", "upper and lower cannot both be true"),
        ("a: {path: payload.x, template: 'no placeholder'}", "template must be a string containing {}"),
        ("a: {path: payload.x, timezone: Europe/London}", "timezone only goes with format_date"),
        ("a: {path: payload.x, format_date: '%d', timezone: Mars/Olympus}", "unknown timezone 'Mars/Olympus'"),
        ("a: {join: [{path: payload.x}, plain]}", r"record\.a\.join\[1\]: each item must be an expression"),
        ("a: {join: 'payload.x'}", "exactly one of path, const or a join list"),
    ],
)
def test_misused_transforms_are_config_errors_at_load(tmp_path: Path, record: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mapping(tmp_path, record)


# -- expressions and structure ---------------------------------------------------------


def test_path_reads_the_payload_and_the_meta(tmp_path: Path) -> None:
    record = "name: {path: payload.name.first}\nref: {path: meta.reference}\n"
    assert run(tmp_path, record, {"name": {"first": "Siân"}}) == {"name": "Siân", "ref": "HUB-7K3F9QXM2A"}


def test_a_missing_path_gives_null(tmp_path: Path) -> None:
    assert run(tmp_path, "a: {path: payload.nothing.here}") == {"a": None}


def test_const_gives_its_value_even_a_list_or_object(tmp_path: Path) -> None:
    record = "a: {const: case_to_crm_create_update_case}\nb: {const: [1, {x: y}]}\n"
    assert run(tmp_path, record) == {"a": "case_to_crm_create_update_case", "b": [1, {"x": "y"}]}


def test_nested_objects_and_lists_build_the_output_tree(tmp_path: Path) -> None:
    record = "data:\n  - inner: {const: 1}\n    deeper: {nest: {const: 2}}\n  - {const: 3}\n"
    assert run(tmp_path, record) == {"data": [{"inner": 1, "deeper": {"nest": 2}}, 3]}


def test_the_record_does_not_share_objects_with_the_payload(tmp_path: Path) -> None:
    payload = {"photos": [{"id": "a"}]}
    result = run(tmp_path, "photos: {path: payload.photos}", payload)
    result["photos"][0]["id"] = "changed"
    assert payload == {"photos": [{"id": "a"}]}


# -- transforms ------------------------------------------------------------------------


def test_default_replaces_a_null_value_only(tmp_path: Path) -> None:
    record = "a: {path: payload.a, default: ''}\nb: {path: payload.b, default: ''}\n"
    assert run(tmp_path, record, {"b": 0}) == {"a": "", "b": 0}


def test_lookup_translates_a_code_through_its_table(tmp_path: Path) -> None:
    result = run(tmp_path, "bin: {path: payload.bin, lookup: bins}", {"bin": "garden"}, "bins: {garden: Garden waste}\n")
    assert result == {"bin": "Garden waste"}


def test_lookup_of_an_unknown_code_raises_mapping_error_naming_the_table(tmp_path: Path) -> None:
    loaded = mapping(tmp_path, "bin: {path: payload.bin, lookup: bins}", "bins: {garden: Garden waste}\n")
    with pytest.raises(MappingError, match=r"record\.bin: code 'purple' is not in lookup table 'bins'"):
        loaded.apply({"bin": "purple"}, META)


def test_lookup_of_an_unknown_code_gives_the_default_when_there_is_one(tmp_path: Path) -> None:
    record = "bin: {path: payload.bin, lookup: bins, default: Unknown}"
    assert run(tmp_path, record, {"bin": "purple"}, "bins: {garden: Garden waste}\n") == {"bin": "Unknown"}


def test_lookup_translates_each_item_of_a_list_and_matches_numeric_codes(tmp_path: Path) -> None:
    record = "a: {path: payload.codes, lookup: t}"
    assert run(tmp_path, record, {"codes": ["x", 2]}, "t: {x: Ex, 2: Two}\n") == {"a": ["Ex", "Two"]}


def test_lookup_leaves_a_null_value_null(tmp_path: Path) -> None:
    assert run(tmp_path, "a: {path: payload.a, lookup: t}", {}, "t: {x: Ex}\n") == {"a": None}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:15:00+00:00", "23/11/2026 10:15"),
        ("2026-11-23T10:15:00Z", "23/11/2026 10:15"),
        ("2026-11-23", "23/11/2026 00:00"),
    ],
)
def test_format_date_accepts_iso_dates_and_date_times(tmp_path: Path, value: str, expected: str) -> None:
    assert run(tmp_path, "a: {path: payload.at, format_date: '%d/%m/%Y %H:%M'}", {"at": value}) == {"a": expected}


def test_format_date_with_a_timezone_shows_summer_times_in_bst(tmp_path: Path) -> None:
    record = "a: {path: payload.at, format_date: '%d/%m/%Y %H:%M', timezone: Europe/London}"
    assert run(tmp_path, record, {"at": "2026-07-14T15:32:00Z"}) == {"a": "14/07/2026 16:32"}


@pytest.mark.parametrize("value", ["23/11/2026", "yesterday", 20261123])
def test_format_date_of_a_bad_value_raises_mapping_error(tmp_path: Path, value: Any) -> None:
    loaded = mapping(tmp_path, "a: {path: payload.at, format_date: '%d/%m/%Y'}")
    with pytest.raises(MappingError, match=r"record\.a: .* is not an ISO 8601 date"):
        loaded.apply({"at": value}, META)


def test_upper_and_lower_change_the_case_of_strings(tmp_path: Path) -> None:
    record = "pc: {path: payload.pc, upper: true}\nemail: {path: payload.email, lower: true}\n"
    result = run(tmp_path, record, {"pc": "bt20 3bb", "email": "Aoife@Example.ORG"})
    assert result == {"pc": "BT20 3BB", "email": "aoife@example.org"}


def test_join_true_joins_the_items_of_a_list_value_with_sep(tmp_path: Path) -> None:
    record = "a: {path: payload.kinds, join: true, sep: ', '}"
    assert run(tmp_path, record, {"kinds": ["tyres", "furniture"]}) == {"a": "tyres, furniture"}


def test_a_join_list_joins_the_results_of_its_expressions(tmp_path: Path) -> None:
    record = "a:\n  join: [{const: 'Ref '}, {path: meta.reference}, {const: 1}, {const: true}]\n"
    assert run(tmp_path, record) == {"a": "Ref HUB-7K3F9QXM2A1true"}


def test_skip_empty_drops_null_and_empty_items_from_a_join(tmp_path: Path) -> None:
    record = "a:\n  join: [{path: payload.x}, {const: ''}, {path: payload.y}, {path: payload.z}]\n  sep: '|'\n"
    assert run(tmp_path, record, {"x": "one", "z": "three"}) == {"a": "one|||three"}
    skipping = record + "  skip_empty: true\n"
    assert run(tmp_path, skipping, {"x": "one", "z": "three"}) == {"a": "one|three"}


def test_joining_a_nested_object_raises_mapping_error(tmp_path: Path) -> None:
    loaded = mapping(tmp_path, "a: {join: [{path: payload.obj}]}")
    with pytest.raises(MappingError, match="cannot join a nested dict"):
        loaded.apply({"obj": {"x": 1}}, META)


def test_template_labels_a_value_and_leaves_null_and_empty_alone(tmp_path: Path) -> None:
    record = "a: {path: payload.a, template: 'Notes: {}'}\nb: {path: payload.b, template: 'Notes: {}'}\n"
    assert run(tmp_path, record, {"a": "Gate is locked {0}"}) == {"a": "Notes: Gate is locked {0}", "b": None}


def test_templated_lines_that_are_empty_vanish_from_a_skip_empty_join(tmp_path: Path) -> None:
    record = (
        "details:\n"
        "  join:\n"
        "    - {path: payload.bin, template: 'Bin: {}'}\n"
        "    - {path: payload.notes, template: 'Notes: {}'}\n"
        "  sep: \"\\n\"\n"
        "  skip_empty: true\n"
    )
    assert run(tmp_path, record, {"bin": "garden"}) == {"details": "Bin: garden"}


def test_omit_if_null_drops_the_key_or_list_item(tmp_path: Path) -> None:
    record = "a: {path: payload.a, omit_if_null: true}\nb: {const: 1}\nc: [{path: payload.c, omit_if_null: true}]\n"
    assert run(tmp_path, record) == {"b": 1, "c": []}
    assert run(tmp_path, record, {"a": "x", "c": "y"}) == {"a": "x", "b": 1, "c": ["y"]}


def test_transforms_apply_in_order_default_lookup_format_case_join_template(tmp_path: Path) -> None:
    record = "a: {path: payload.codes, default: [g], lookup: t, upper: true, join: true, sep: '+', template: '<{}>'}"
    assert run(tmp_path, record, {}, "t: {g: garden, r: recycling}\n") == {"a": "<GARDEN>"}
    assert run(tmp_path, record, {"codes": ["g", "r"]}, "t: {g: garden, r: recycling}\n") == {"a": "<GARDEN+RECYCLING>"}


def test_a_jmespath_runtime_error_raises_mapping_error(tmp_path: Path) -> None:
    loaded = mapping(tmp_path, "a: {path: \"join(', ', payload.x)\"}")
    with pytest.raises(MappingError, match=r"record\.a:"):
        loaded.apply({"x": None}, META)


# -- mapping cases ---------------------------------------------------------------------


def test_mapping_cases_read_samples_from_the_schemas_directory(tmp_path: Path) -> None:
    (tmp_path / "schemas" / "test-form" / "samples").mkdir(parents=True)
    (tmp_path / "schemas" / "test-form" / "samples" / "one.json").write_text('{"x": 1}')
    (tmp_path / "mappings" / "test-form.crm.cases").mkdir(parents=True)
    case_file = tmp_path / "mappings" / "test-form.crm.cases" / "first.json"
    case_file.write_text('{"meta": {"reference": "R"}, "sample": "one", "expected": {"a": 1}}')
    [case] = mapping_cases(tmp_path / "mappings")
    assert (case.name, case.key, case.payload, case.meta, case.expected, case.path) == (
        "test-form.crm/first", ("test-form", "crm"), {"x": 1}, {"reference": "R"}, {"a": 1}, case_file
    )


def test_a_case_naming_a_missing_sample_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "test-form.crm.cases").mkdir()
    (tmp_path / "test-form.crm.cases" / "x.json").write_text('{"meta": {}, "sample": "gone", "expected": {}}')
    with pytest.raises(ConfigError, match="sample 'gone' not found"):
        mapping_cases(tmp_path, schemas=tmp_path / "schemas")


def test_a_case_with_both_sample_and_payload_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "test-form.crm.cases").mkdir()
    (tmp_path / "test-form.crm.cases" / "x.json").write_text('{"meta": {}, "sample": "a", "payload": {}, "expected": {}}')
    with pytest.raises(ConfigError, match="one of sample or payload"):
        mapping_cases(tmp_path, schemas=tmp_path)
