"""Every secret setting can come from a file (HUB_<NAME>_FILE), as Kubernetes and compose mount
secrets: the content is the value, trailing newline stripped; an unreadable file is named by its
path; production refuses a secret given both ways, naming the setting but never the value."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from hub.cli.main import app
from hub.config import production
from hub.config.settings import SECRET_SETTINGS, Settings, file_variable, load_settings
from hub.errors import ConfigError


def production_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        "HUB_ENVIRONMENT": "production",
        "HUB_DATA_DIR": str(tmp_path / "var"),
        "HUB_DATABASE_URL": f"postgresql+psycopg://hub:{secrets.token_hex(12)}@db:5432/hub",
        "HUB_BROKER_URL": f"amqp://hub:{secrets.token_hex(12)}@rabbitmq:5672/hub",
        "HUB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "HUB_INDEX_KEY": secrets.token_urlsafe(48),
        "HUB_SESSION_KEY": secrets.token_urlsafe(48),
        "HUB_STAFF_AUTH": "oidc",
        "HUB_OIDC_ISSUER": "https://login.council.example",
        "HUB_OIDC_CLIENT_ID": "hub",
        "HUB_OIDC_CLIENT_SECRET": secrets.token_urlsafe(24),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def as_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, values: dict[str, str], names: list[str]) -> None:
    """Moves each of `names` from the environment into a file, as a mounted secret ends: with a newline."""
    secret_dir = tmp_path / "run-secrets"
    secret_dir.mkdir(exist_ok=True)
    for name in names:
        path = secret_dir / name.lower()
        path.write_text(values[name] + "\n")
        monkeypatch.delenv(name)
        monkeypatch.setenv(f"{name}_FILE", str(path))


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_each_secret_setting_is_read_from_its_file_without_the_trailing_newline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    value = f"sqlite:///{tmp_path / 'x.db'}" if name == "database_url" else secrets.token_urlsafe(40)
    path = tmp_path / "secret"
    path.write_text(value + "\n")
    monkeypatch.setenv(file_variable(name), str(path))
    got = getattr(load_settings(), name)
    assert (got if isinstance(got, str) else got.get_secret_value()) == value


def test_a_production_hub_starts_with_every_secret_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = production_environment(monkeypatch, tmp_path)
    secret_names = [file_variable(name).removesuffix("_FILE") for name in SECRET_SETTINGS if file_variable(name).removesuffix("_FILE") in values]
    as_files(monkeypatch, tmp_path, values, secret_names)
    settings = load_settings()
    assert production.problems(settings) == []
    assert settings.database_url == values["HUB_DATABASE_URL"]
    assert settings.session_key is not None and settings.session_key.get_secret_value() == values["HUB_SESSION_KEY"]
    assert len(secret_names) == 6


def test_production_refuses_a_secret_given_both_ways_naming_it_but_not_its_value(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = production_environment(monkeypatch, tmp_path)
    path = tmp_path / "session_key"
    path.write_text(secrets.token_urlsafe(48))
    monkeypatch.setenv("HUB_SESSION_KEY_FILE", str(path))
    settings = load_settings()
    with pytest.raises(ConfigError) as refused:
        production.ensure_ready(settings)
    message = str(refused.value)
    assert "HUB_SESSION_KEY is given both as HUB_SESSION_KEY and as HUB_SESSION_KEY_FILE: give it one way only" in message
    assert values["HUB_SESSION_KEY"] not in message and path.read_text() not in message


def test_development_takes_a_secret_given_both_ways_from_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "index_key"
    path.write_text("from-the-file\r\n")
    monkeypatch.setenv("HUB_INDEX_KEY", "from-the-environment")
    monkeypatch.setenv("HUB_INDEX_KEY_FILE", str(path))
    settings = load_settings()
    assert settings.index_key is not None and settings.index_key.get_secret_value() == "from-the-file"
    assert production.problems(settings) == []


def test_an_unreadable_secret_file_is_an_error_naming_the_variable_and_path(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    monkeypatch.setenv("HUB_OIDC_CLIENT_SECRET_FILE", str(missing))
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value) == (
        f"HUB_OIDC_CLIENT_SECRET_FILE: cannot read the secret file {missing}: No such file or directory")


def test_a_command_with_an_unreadable_secret_file_says_so_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_SESSION_KEY_FILE", str(tmp_path))  # a folder, not a file
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 2
    assert f"HUB_SESSION_KEY_FILE: cannot read the secret file {tmp_path}: Is a directory" in result.output
    assert "Traceback" not in result.output


def test_a_file_variable_for_a_setting_that_is_not_secret_is_an_unknown_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LOG_LEVEL_FILE", "/run/secrets/log_level")
    with pytest.raises(ConfigError, match="unknown setting.*HUB_LOG_LEVEL_FILE"):
        load_settings()


def test_every_secret_field_of_the_settings_reads_a_file() -> None:
    secret_typed = {name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)}
    assert secret_typed <= set(SECRET_SETTINGS)
    assert {"database_url", "broker_url"} <= set(SECRET_SETTINGS)
