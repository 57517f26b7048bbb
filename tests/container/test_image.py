"""The hub's one image (deploy/Containerfile), built with podman as `make image` builds it, and run
as a council would run it: `hub migrate`, `hub api` and `hub worker` containers in production mode,
against the tests' own RabbitMQ and PostgreSQL, with the council's configuration mounted read-only.

Outside CI a machine without podman skips these tests; in CI they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet

from tests.support.processes import REPO, HubProcesses, hub_processes
from tests.support.realworld import unavailable
from tests.support.servers import PostgresServer, RabbitMQServer, free_port

pytestmark = pytest.mark.container

# HUB_TEST_IMAGE names another tag, so parallel checkouts on one machine do not overwrite each other's
IMAGE = os.environ.get("HUB_TEST_IMAGE", "council-hub:dev")
RUNC = "/usr/sbin/runc"
# crun fails on these machines; podman's default ulimits exceed some sandboxes' hard limits
PODMAN = ["podman", "--runtime", RUNC]
RUN = [*PODMAN, "run", "--rm", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="session")
def image() -> str:
    """Builds the image (the Debian base is made once and kept) and says how long it took."""
    if shutil.which("podman") is None or not Path(RUNC).exists():
        unavailable("needs podman and runc (`make image-tools` installs them)")
    started = time.monotonic()
    done = subprocess.run(["bash", "scripts/build-image.sh"], cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "IMAGE": IMAGE})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nimage: {done.stdout.strip().splitlines()[-1]} ({time.monotonic() - started:.0f} s with the base)")
    return IMAGE


def podman(*args: str, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=env)


def council_config(api_key: str) -> Path:
    """The bundled configuration with its clients given key hashes and its staff removed, as a
    council's production configuration must be; readable by the image's uid 10001."""
    folder = Path(tempfile.mkdtemp(prefix="hub-image-config-"))
    folder.chmod(0o755)
    config = folder / "config"
    shutil.copytree(REPO / "config", config)
    clients = yaml.safe_load((config / "clients.yaml").read_text())
    for client in clients["clients"]:
        client.pop("api_key_env", None)
        key = api_key if client["id"] == "demo-portal" else secrets.token_urlsafe(32)
        client["api_key_sha256"] = [hashlib.sha256(key.encode()).hexdigest()]
    clients["staff"] = []
    (config / "clients.yaml").write_text(yaml.safe_dump(clients, sort_keys=False))
    for path in [config, *config.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture()
def containers(tmp_path: Path, image: str, postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[HubProcesses]:
    """`hub migrate`, then api and worker containers as the test starts them; removed afterwards."""
    prefix = "hub-test-" + secrets.token_hex(3)
    api_key = "council-" + secrets.token_urlsafe(32)
    config = council_config(api_key)
    production = {
        "HUB_ENVIRONMENT": "production",
        "HUB_DEMO_API_KEY": None,
        "HUB_CONFIG_DIR": "/config",
        "HUB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "HUB_INDEX_KEY": secrets.token_urlsafe(48),
        "HUB_SESSION_KEY": secrets.token_urlsafe(48),
        # the bundled configuration gives a form a fee: production refuses to start without GOV.UK Pay's key
        "HUB_PAY_API_KEY": "api_test_" + secrets.token_urlsafe(24),
    }
    passed: list[str] = []

    def launcher(name: str) -> list[str]:
        # values travel in podman's environment (`-e NAME`), never on its command line
        return [*RUN, "--name", f"{prefix}-{name}", "--read-only", "-v", f"{config / 'config'}:/config:ro",
                *[arg for variable in passed for arg in ("-e", variable)], image]

    def remove(name: str) -> None:
        podman("rm", "--force", "--ignore", f"{prefix}-{name}", timeout=60)

    passed.extend(sorted({*production} - {"HUB_DEMO_API_KEY"} | {"HUB_DATABASE_URL", "HUB_BROKER_URL", "HUB_EXCHANGE",
                         "HUB_QUEUE_PREFIX", "HUB_RELAY_SWEEP_SECONDS", "CRM_URL", "CRM_API_TOKEN",
                         "GARDEN_WASTE_URL", "GARDEN_WASTE_API_TOKEN"}))
    stack = hub_processes(tmp_path, postgres.create_database(f"hub_image_{secrets.token_hex(3)}"), rabbitmq.url,
                          launcher=launcher, after_stop=remove, env_changes=production)
    stack.key = api_key
    try:
        yield stack
    finally:
        stack.close()
        shutil.rmtree(config, ignore_errors=True)


def test_the_image_runs_as_a_non_root_user_in_production_mode(image: str) -> None:
    inspected = podman("image", "inspect", "--format", "{{.Config.User}} {{range .Config.Env}}{{.}} {{end}}", image)
    assert inspected.returncode == 0, inspected.stderr
    user, *env = inspected.stdout.split()
    assert user.split(":")[0] == "10001"
    assert "HUB_ENVIRONMENT=production" in env


def test_a_production_container_without_its_keys_refuses_to_start_and_names_them(image: str) -> None:
    done = subprocess.run([*RUN, "--read-only", image, "api"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    said = done.stdout + done.stderr
    for setting in ("HUB_ENCRYPTION_KEYS", "HUB_INDEX_KEY", "HUB_SESSION_KEY", "HUB_BROKER_URL", "HUB_DATABASE_URL"):
        assert setting in said


def test_migrate_api_and_worker_containers_deliver_a_submission_to_the_crm(containers: HubProcesses) -> None:
    containers.start_api()
    # the probes Kubernetes and compose ask (deploy/): the worker's port, open beyond the container
    probes = free_port()
    containers.start_worker("worker", "--metrics-port", str(probes), "--metrics-host", "0.0.0.0")
    sample = (REPO / "schemas" / "missed-bin-collection" / "samples" / "general-uprn.json").read_text()
    with containers.client() as client:
        response = client.post("/v1/forms/missed-bin-collection/submissions", content=sample,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    reference = response.json()["reference"]
    [delivery] = containers.wait_settled([reference], timeout=60)[reference]["deliveries"]
    assert delivery["state"] == "delivered"
    [case] = containers.crm.cases()
    assert case["client_unique_identifier"] == f"{reference}/crm"
    assert delivery["external_reference"] == case["reference"]
    ready = httpx.get(f"http://127.0.0.1:{probes}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json() == {"ready": True, "checks": {"broker": True, "database": True}}
    assert httpx.get(f"http://127.0.0.1:{probes}/healthz", timeout=5).json()["status"] == "ok"
    assert 'hub_deliveries_total' in httpx.get(f"http://127.0.0.1:{probes}/metrics", timeout=5).text
    logs = containers.all_logs()
    for secret in ("HUB_ENCRYPTION_KEYS", "HUB_INDEX_KEY", "HUB_SESSION_KEY", "HUB_PAY_API_KEY"):
        assert containers.env[secret] not in logs


def test_the_demo_runs_inside_the_image_and_delivers_every_sample(image: str) -> None:
    env = {**os.environ, "HUB_ENVIRONMENT": "development"}
    done = subprocess.run([*RUN, "--read-only", "-e", "HUB_ENVIRONMENT", image, "demo", "--once", "--port", "0"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "NOT ALL DELIVERED" not in done.stdout
    assert "delivered" in done.stdout


def test_the_image_carries_a_bill_of_materials_of_exactly_the_locked_dependencies(image: str) -> None:
    """The CycloneDX SBOM the build wrote (/opt/hub/sbom.cdx.json, copied to build/sbom.cdx.json by
    scripts/build-image.sh) names the hub and every runtime dependency at the version
    requirements/runtime.txt pins, and nothing the lock does not."""
    from packaging.utils import canonicalize_name

    from tests.unit.test_supply_chain import lock

    inside = subprocess.run([*RUN, "--entrypoint", "cat", image, "/opt/hub/sbom.cdx.json"], capture_output=True, text=True, timeout=120)
    assert inside.returncode == 0, inside.stderr
    bom = json.loads(inside.stdout)
    assert json.loads((REPO / "build" / "sbom.cdx.json").read_text()) == bom
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    listed = {canonicalize_name(component["name"]): component for component in bom["components"]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert listed["council-connector-hub"]["version"] == project["version"]
    pins = lock("runtime.txt")
    for name in ("fastapi", "uvicorn", "sqlalchemy", "kombu", "cryptography"):
        assert listed[name]["version"] == str(pins[name].version), name
        assert listed[name]["purl"] == f"pkg:pypi/{name}@{pins[name].version}"
    differ = {name: (component["version"], str(pins[name].version) if name in pins else None)
              for name, component in listed.items()
              if name != "council-connector-hub" and (name not in pins or component["version"] != str(pins[name].version))}
    assert differ == {}, "the image holds a package at a version the lock does not pin"
    assert set(pins) - set(listed) <= {"pip"}
