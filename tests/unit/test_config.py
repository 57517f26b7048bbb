from pathlib import Path

import pytest

from hub.config.files import hash_api_key, load_config
from hub.config.settings import Settings
from hub.errors import ConfigError

REPO_CONFIG = Settings().config_dir


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


def minimal(directory: Path, routes: str = "", extra_client: str = "") -> None:
    write(directory, "tenants.yaml", "tenants:\n  - {id: eastmoor, name: Eastmoor, reference_prefix: EDC}\n")
    write(directory, "clients.yaml", "clients:\n  - {id: portal, tenant: eastmoor, api_key_env: PORTAL_KEY}\n" + extra_client)
    write(directory, "connectors.yaml", "connectors:\n  - {name: crm, type: rest, options: {url: 'http://x'}}\n")
    write(directory, "routes.yaml", routes or "routes:\n  - {form: missed-bin-collection, to: [{connector: crm}]}\n")


def test_the_shipped_configuration_loads() -> None:
    config = load_config(REPO_CONFIG, {"HUB_DEMO_API_KEY": "k" * 20})
    assert "crm" in config.connectors
    assert config.client_for_key("k" * 20).id == "demo-portal"  # type: ignore[union-attr]


def test_a_client_is_found_by_the_hash_of_its_key_and_unknown_keys_are_not(tmp_path: Path) -> None:
    minimal(tmp_path, extra_client=f"  - {{id: kiosk, tenant: eastmoor, api_key_sha256: ['{hash_api_key('kiosk-key')}']}}\n")
    config = load_config(tmp_path, {"PORTAL_KEY": "portal-key"})
    assert config.client_for_key("portal-key").id == "portal"  # type: ignore[union-attr]
    assert config.client_for_key("kiosk-key").id == "kiosk"  # type: ignore[union-attr]
    assert config.client_for_key("guess") is None


def test_a_route_to_an_unknown_connector_is_reported_with_file_and_line(tmp_path: Path) -> None:
    minimal(tmp_path, routes="routes:\n  - form: missed-bin-collection\n    to: [{connector: crn}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    message = str(caught.value)
    assert f"{tmp_path / 'routes.yaml'}:3" in message
    assert "unknown connector 'crn' (known: crm)" in message


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    minimal(tmp_path)
    write(tmp_path, "more.yaml", "clients:\n  - {id: Bad Id, tenant: nowhere}\nwidgets: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    lines = str(caught.value).splitlines()
    assert any("unknown section 'widgets'" in line for line in lines)
    assert any("client id: String should match pattern" in line for line in lines)
    assert len(lines) >= 2


def test_endpoints_are_filled_from_the_environment_with_defaults(tmp_path: Path) -> None:
    minimal(tmp_path)
    write(tmp_path, "connectors.yaml", "connectors:\n  - {name: crm, type: rest, options: {url: '${CRM_URL:-http://fallback}/cases'}}\n")
    assert load_config(tmp_path, {}).connectors["crm"].options["url"] == "http://fallback/cases"
    assert load_config(tmp_path, {"CRM_URL": "http://crm.internal"}).connectors["crm"].options["url"] == "http://crm.internal/cases"


def test_a_condition_that_is_not_jmespath_is_refused(tmp_path: Path) -> None:
    minimal(tmp_path, routes="routes:\n  - {form: f, to: [{connector: crm, when: 'bin_type =='}]}\n")
    with pytest.raises(ConfigError, match="condition is not valid JMESPath"):
        load_config(tmp_path, {})


def test_api_key_hashes_must_be_sha256_hex(tmp_path: Path) -> None:
    minimal(tmp_path, extra_client="  - {id: kiosk, tenant: eastmoor, api_key_sha256: ['plain-text-key']}\n")
    with pytest.raises(ConfigError, match="64 lower-case hex digits"):
        load_config(tmp_path, {})
