"""deploy/compose.yaml, its env file and RabbitMQ definitions as an operator meets them: a file
Compose accepts, services in the right order with health checks, and settings the hub accepts.

No container engine runs here, so these read the files; docs/deploy.md says what was not tried.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import secrets
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema_rs
import pytest
import yaml
from cryptography.fernet import Fernet

from hub.config import production
from hub.config.settings import ENV_PREFIX, Settings
from hub.errors import ConfigError
from hub.runtime import Runtime
from tests.support.realworld import realworld

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "hub.env.example"
RABBITMQ = DEPLOY / "rabbitmq"
GUIDE = ROOT / "docs" / "deploy.md"
HUB_SERVICES = ("migrate", "api", "worker")
PLACEHOLDER = "CHANGE-ME"
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASS|TOKEN")


def user_definitions() -> ModuleType:
    spec = importlib.util.spec_from_file_location("user_definitions", RABBITMQ / "user_definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    values: dict[str, str] = user_definitions().env_values(ENV_EXAMPLE)
    return values


def settings_of(values: dict[str, str]) -> dict[str, str]:
    return {name.removeprefix(ENV_PREFIX).lower(): value for name, value in values.items() if name.startswith(ENV_PREFIX)}


def others_of(values: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if not name.startswith(ENV_PREFIX)}


def filled_in(values: dict[str, str]) -> dict[str, str]:
    """The example with each CHANGE-ME replaced as its comment says: a Fernet key, random secrets."""
    made = {}
    for name, value in values.items():
        if name == "HUB_ENCRYPTION_KEYS":
            made[name] = Fernet.generate_key().decode()
        else:
            made[name] = re.sub(rf"{PLACEHOLDER}[\w-]*", lambda _: secrets.token_hex(24), value)
    return made


def command_option(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def test_the_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(realworld("compose-spec", "compose-spec.json").read_text())
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in jsonschema_rs.validator_for(schema).iter_errors(compose)]
    assert errors == []


def test_the_api_runs_two_replicas_each_on_its_own_loopback_port(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert api["deploy"]["replicas"] == 2
    [published] = api["ports"]
    host_ip, host_ports, container_port = published.split(":")
    first, _, last = host_ports.partition("-")
    assert host_ip == "127.0.0.1" and container_port == "8000"
    assert int(last or first) - int(first) + 1 >= api["deploy"]["replicas"], "two replicas cannot bind one host port"


def test_migrate_runs_once_and_api_and_worker_start_only_after_it_succeeded(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["rabbitmq"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            assert service["healthcheck"] == {"disable": True}, f"{name}: a one-shot job says it has no probe"
        else:
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_the_api_is_probed_on_readyz_and_the_worker_on_its_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    assert "http://127.0.0.1:8000/readyz" in services["api"]["healthcheck"]["test"][-1]
    worker = services["worker"]
    port = command_option(worker["command"], "--metrics-port")
    # the probe asks on the container's loopback; 0.0.0.0 lets Prometheus scrape the same port
    assert command_option(worker["command"], "--metrics-host") == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/healthz" in worker["healthcheck"]["test"][-1]
    assert command_option(worker["command"], "--concurrency") == "16"


def test_the_worker_is_given_longer_to_stop_than_its_grace(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    grace = float(command_option(worker["command"], "--grace"))
    stop = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert stop is not None
    assert int(stop.group(1)) > grace


def test_hub_processes_run_read_only_unprivileged_from_the_hub_image(services: dict[str, dict[str, Any]]) -> None:
    for name in HUB_SERVICES:
        service = services[name]
        assert service["image"] == "council-hub:dev"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Containerfile"}
        assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service, f"{name}: the image's uid 10001 stands"
        assert service["env_file"] == "hub.env"


def test_the_councils_configuration_is_mounted_read_only_where_hub_config_dir_points(services: dict[str, dict[str, Any]]) -> None:
    for name in HUB_SERVICES:
        service = services[name]
        [mount] = [v for v in service["volumes"] if v["target"] == service["environment"]["HUB_CONFIG_DIR"]]
        assert mount["read_only"] is True
        assert (COMPOSE.parent / mount["source"]).is_dir()


def test_postgres_is_16_with_a_volume_and_its_password_from_a_secret_file(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    assert postgres["secrets"] == ["postgres_password"]
    assert compose["secrets"]["postgres_password"]["file"] == "./postgres_password"
    volume = postgres["volumes"][0].split(":")
    assert volume == ["postgres-data", "/var/lib/postgresql/data"] and "postgres-data" in compose["volumes"]
    assert postgres["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "hub", "-d", "hub"]


def test_rabbitmq_is_4_and_loads_a_quorum_vhost_and_the_hub_users_permissions(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], example: dict[str, str],
) -> None:
    rabbitmq = services["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:4\.\d+(-management)?", rabbitmq["image"])
    assert "rabbitmq-data:/var/lib/rabbitmq" in rabbitmq["volumes"] and "rabbitmq-data" in compose["volumes"]
    conf = (RABBITMQ / "rabbitmq.conf").read_text()
    [folder] = re.findall(r"^load_definitions\s*=\s*(\S+)$", conf, re.MULTILINE)
    mounts = {v["target"]: v["source"] for v in rabbitmq["volumes"] if isinstance(v, dict)}
    assert mounts["/etc/rabbitmq/conf.d/20-hub.conf"] == "./rabbitmq/rabbitmq.conf"
    loaded = sorted(target for target in mounts if target.startswith(folder + "/"))
    # imported in name order: the user before the permissions that name it
    assert [mounts[target] for target in loaded] == ["./rabbitmq/user.json", "./rabbitmq/definitions.json"]
    definitions = json.loads((RABBITMQ / "definitions.json").read_text())
    [vhost] = definitions["vhosts"]
    assert vhost["metadata"]["default_queue_type"] == "quorum"
    broker = re.fullmatch(r"amqp://(\w+):[^@]+@rabbitmq:5672/(\w+)", example["HUB_BROKER_URL"])
    assert broker is not None, "the hub connects to the compose service rabbitmq"
    user, vhost_name = broker.groups()
    assert vhost["name"] == vhost_name
    assert {(p["user"], p["vhost"]) for p in definitions["permissions"]} == {(user, vhost_name)}


def test_the_repository_holds_no_broker_user_nor_password_hash() -> None:
    definitions = json.loads((RABBITMQ / "definitions.json").read_text())
    assert "users" not in definitions
    assert "password" not in (RABBITMQ / "definitions.json").read_text()


def test_the_broker_user_is_made_from_hub_broker_url_with_rabbitmqs_password_hash(tmp_path: Path, example: dict[str, str]) -> None:
    module = user_definitions()
    password = secrets.token_hex(24)
    [user] = module.user_definitions(f"amqp://hub:{password}@rabbitmq:5672/hub")["users"]
    assert user["name"] == "hub" and user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    assert digest == hashlib.sha256(salt + password.encode()).digest()
    assert password not in json.dumps(user)
    with pytest.raises(ValueError, match="CHANGE-ME placeholder"):
        module.user_definitions(example["HUB_BROKER_URL"])


def test_every_hub_variable_given_to_the_hub_is_one_of_its_settings(services: dict[str, dict[str, Any]], example: dict[str, str]) -> None:
    known = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    given = set(example) | {name for s in HUB_SERVICES for name in services[s].get("environment", {})}
    assert {name for name in given if name.startswith(ENV_PREFIX)} - known == set()


def test_the_example_as_shipped_is_refused_by_a_production_start(example: dict[str, str]) -> None:
    settings = Settings(**settings_of(example), config_dir=DEPLOY / "config")
    assert settings.environment == "production"
    refused = production.problems(settings)
    assert any("HUB_INDEX_KEY" in p for p in refused) and any("HUB_SESSION_KEY" in p for p in refused)
    with pytest.raises(ConfigError):
        Runtime.build(settings, others_of(example))


def test_the_example_filled_in_as_its_comments_say_starts_in_production_with_the_starter_configuration(
    tmp_path: Path, example: dict[str, str],
) -> None:
    values = filled_in(example)
    settings = Settings(**settings_of(values), config_dir=DEPLOY / "config", data_dir=tmp_path / "var")
    assert production.problems(settings) == []
    runtime = Runtime.build(settings, others_of(values))
    try:
        assert runtime.describe()["connectors"] == ["crm"]
    finally:
        runtime.close()
    assert not (tmp_path / "var").exists(), "production made a development key"


def test_no_secret_is_written_in_the_example_or_the_compose_file(example: dict[str, str]) -> None:
    for name, value in example.items():
        if SECRET_NAME.search(name.removeprefix(ENV_PREFIX)):
            assert value.startswith(PLACEHOLDER), f"{name} must be a {PLACEHOLDER} placeholder"
        for password in re.findall(r"://[^:/@]+:([^@]+)@", value):
            assert password.startswith(PLACEHOLDER), f"{name} carries a password"
    compose_text = COMPOSE.read_text()
    assert not re.search(r"://[^:/@\s]+:[^@\s]+@", compose_text), "a URL with a password in compose.yaml"
    assert not re.search(r"(PASSWORD|PASS|SECRET|TOKEN)\s*[:=]\s*\S", compose_text.replace("POSTGRES_PASSWORD_FILE", ""))


def test_git_ignores_the_files_that_hold_secrets() -> None:
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    assert {"deploy/hub.env", "deploy/postgres_password", "deploy/rabbitmq/user.json"} <= ignored
    assert "deploy/hub.env.example" not in ignored


def test_the_deployment_guide_names_every_setting() -> None:
    guide = GUIDE.read_text()
    missing = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields if f"`{ENV_PREFIX}{name.upper()}`" not in guide]
    assert missing == []
