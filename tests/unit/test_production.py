"""A production start (HUB_ENVIRONMENT=production) refuses demo keys, development keys, default
secrets, the embedded servers and the recording connector, naming each; an unknown HUB_ variable is refused everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from hub.cli.main import app
from hub.config.files import hash_api_key, load_config
from hub.config.settings import Settings, load_settings
from hub.errors import ConfigError
from hub.runtime import Runtime

SECRET = "s" * 40
PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql+psycopg://hub@127.0.0.1:1/hub",
    "broker_url": "amqp://hub:pw@127.0.0.1:1//",
    "encryption_keys": Fernet.generate_key().decode(),
    "index_key": SECRET,
    "session_key": SECRET,
}


def council_config(tmp_path: Path) -> Path:
    """A council's configuration: a client known only by its key's hash."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "hub.yaml").write_text(f"""
tenants: [{{id: northfield, name: Northfield, reference_prefix: NDC, allowed_hosts: ["crm.northfield.gov.uk"]}}]
clients: [{{id: portal, tenant: northfield, api_key_sha256: ["{hash_api_key('k' * 40)}"]}}]
connectors: [{{name: crm, type: rest, options: {{url: "https://crm.northfield.gov.uk/cases"}}}}]
routes: [{{form: missed-bin-collection, to: [{{connector: crm}}]}}]
""")
    return config


def test_production_starts_with_every_key_given_and_real_servers(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(**PRODUCTION, config_dir=council_config(tmp_path), data_dir=tmp_path / "var"), {})
    try:
        assert runtime.describe()["connectors"] == ["crm"]
    finally:
        runtime.close()
    assert not (tmp_path / "var").exists(), "production made a development key"


@pytest.mark.parametrize(("missing", "named"), [
    ("encryption_keys", "HUB_ENCRYPTION_KEYS is not set"),
    ("index_key", "HUB_INDEX_KEY is not set"),
    ("session_key", "HUB_SESSION_KEY is not set"),
])
def test_production_refuses_to_make_a_development_key(tmp_path: Path, missing: str, named: str) -> None:
    settings = Settings(**{**PRODUCTION, missing: None}, config_dir=council_config(tmp_path), data_dir=tmp_path / "var")
    with pytest.raises(ConfigError, match=named):
        Runtime.build(settings, {})


def test_production_names_every_default_and_demo_setting_at_once(tmp_path: Path) -> None:
    settings = Settings(environment="production", config_dir=council_config(tmp_path), demo_api_key="demo", session_key="short",
                        staff_auth="oidc", oidc_issuer="http://idp.example", data_dir=tmp_path / "var")
    with pytest.raises(ConfigError) as refused:
        Runtime.build(settings, {})
    message = str(refused.value)
    for named in ("HUB_ENCRYPTION_KEYS is not set", "HUB_INDEX_KEY is not set", "HUB_SESSION_KEY is shorter than 32",
                  "HUB_DEMO_API_KEY is set", "HUB_BROKER_URL is the in-process broker", "HUB_DATABASE_URL is the demo's SQLite",
                  "HUB_OIDC_ISSUER must be an https:// URL", "HUB_OIDC_CLIENT_SECRET is not set"):
        assert named in message


def test_production_refuses_the_demo_configurations_keys_from_the_environment(tmp_path: Path) -> None:
    # the shipped demo configuration reads its clients' keys and staff tokens from variables
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(**PRODUCTION, data_dir=tmp_path / "var"), {})
    assert "client 'demo-portal' takes its API key from HUB_DEMO_API_KEY" in str(refused.value)
    assert "staff 'ict-operator' takes a token from DEMO_STAFF_TOKEN" in str(refused.value)


def test_production_refuses_a_recording_connector_naming_it(tmp_path: Path) -> None:
    config = council_config(tmp_path)
    hub_yaml = config / "hub.yaml"
    hub_yaml.write_text(hub_yaml.read_text().replace(
        "connectors: [", "connectors: [{name: new-form-preview, type: recording}, ").replace(
        "to: [{connector: crm}]", "to: [{connector: crm}, {connector: new-form-preview}]"))
    with pytest.raises(ConfigError) as refused:
        Runtime.build(Settings(**PRODUCTION, config_dir=config, data_dir=tmp_path / "var"), {})
    message = str(refused.value)
    assert message.startswith("HUB_ENVIRONMENT=production refuses to start:")
    assert ("- connector 'new-form-preview' is of type recording, which keeps residents' submissions in memory "
            "and loses them when the process stops: give it a real back office") in message
    assert "'crm'" not in message


def test_development_makes_its_keys_in_the_data_directory(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(database_url="sqlite://", data_dir=tmp_path / "var"), {})
    runtime.close()
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["encryption.key", "index.key"]


def test_a_misspelt_setting_is_refused_with_the_one_it_meant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABSE_URL", "postgresql+psycopg://hub@db/hub")
    with pytest.raises(ConfigError, match=r"HUB_DATABSE_URL \(did you mean HUB_DATABASE_URL\?\)"):
        load_settings()


def test_every_command_refuses_an_unknown_setting_before_doing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BROKER", "amqp://rabbit//")
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert "unknown setting(s) in the environment: HUB_BROKER" in result.output
    assert "Traceback" not in result.output


def test_hub_migrate_refuses_production_without_its_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 2 and "HUB_ENVIRONMENT=production refuses to start" in result.output


def test_production_refuses_fees_without_a_pay_api_key_or_over_plain_http(tmp_path: Path) -> None:
    from hub.config import production

    config = council_config(tmp_path)
    (config / "payments").mkdir()
    (config / "payments" / "payments.yaml").write_text(
        "forms:\n  missed-bin-collection:\n    amount_pence: 100\n    description: x\n    return_url: https://portal.example.org/\n")
    settings = Settings(**PRODUCTION, config_dir=config, data_dir=tmp_path / "var", pay_url="http://pay.example.org")
    found = production.problems(settings, load_config(config, {}))
    assert "HUB_PAY_API_KEY is not set, and config/payments/payments.yaml gives forms a fee" in found
    assert "HUB_PAY_URL must be an https:// URL in production, not http://pay.example.org" in found
