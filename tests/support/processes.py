"""The hub as it runs in production, for end-to-end tests: `hub api` and `hub worker` as real
processes against a real RabbitMQ and PostgreSQL, and CRM simulators on loopback.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hub.api.server_thread import ServerThread
from simulators.crm import CrmState
from simulators.crm import create_app as create_crm
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def from_checkout(name: str) -> list[str]:
    """The command that runs `hub` as process `name`: this checkout's code."""
    return [sys.executable, "-m", "hub"]


@dataclass
class HubProcesses:
    workdir: Path
    env: dict[str, str]
    crm: CrmState
    garden: CrmState
    key: str
    api_urls: list[str] = field(default_factory=list)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _servers: list[ServerThread] = field(default_factory=list)
    # process name -> the command that runs `hub` (this checkout, or a container of the image)
    launcher: Callable[[str], list[str]] = from_checkout
    # called with each process name once the process is stopped (a container to remove, say)
    after_stop: Callable[[str], None] = lambda name: None

    def override_connector(self, name: str, **fields: Any) -> None:
        """Changes one connector's settings (retry, circuit, options...) in a private copy of the
        configuration, for processes started afterwards."""
        import shutil

        import yaml

        config = self.workdir / "config"
        if not config.exists():
            shutil.copytree(REPO / "config", config)
            self.env["HUB_CONFIG_DIR"] = str(config)
        for path in sorted(config.glob("*.yaml")):
            document = yaml.safe_load(path.read_text()) or {}
            for entry in document.get("connectors", []):
                if entry["name"] == name:
                    for key, value in fields.items():
                        if isinstance(value, dict) and isinstance(entry.get(key), dict):
                            entry[key] = {**entry[key], **value}
                        else:
                            entry[key] = value
                    path.write_text(yaml.safe_dump(document, sort_keys=False))
                    return
        raise KeyError(f"no connector {name!r} in the configuration")

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*self.launcher(name), *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs[name] = proc
        return proc

    def migrate(self) -> None:
        done = subprocess.run([*self.launcher("migrate"), "migrate"], cwd=REPO, env=self.env, capture_output=True, timeout=120)
        self.after_stop("migrate")
        if done.returncode != 0:
            raise RuntimeError(f"hub migrate exited {done.returncode}:\n{done.stdout.decode(errors='replace')[-3000:]}")

    def start_api(self, name: str = "api", *args: str, port: int | None = None) -> str:
        """Starts `hub api` (on `port`, or a free one) with `args`; returns its URL once ready."""
        port = port or free_port()
        self._spawn(name, "api", "--port", str(port), *args)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self._procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        if url not in self.api_urls:
            self.api_urls.append(url)
        return url

    def start_worker(self, name: str = "worker", *args: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, "worker", *args)
        deadline = time.monotonic() + 30
        while "worker_consuming" not in self.log(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start consuming:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
        """Signals process `name` and waits (at most `timeout` s) for it to end; its exit status."""
        proc = self._procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout)
        self.after_stop(name)
        return proc.returncode

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def client(self, index: int = 0) -> httpx.Client:
        return httpx.Client(base_url=self.api_urls[index], headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def wait_settled(self, references: list[str], timeout: float = 120.0) -> dict[str, dict[str, Any]]:
        """Polls each submission's status over HTTP until none is pending or retrying."""
        deadline = time.monotonic() + timeout
        settled: dict[str, dict[str, Any]] = {}
        with self.client() as client:
            while True:
                for reference in references:
                    if reference in settled:
                        continue
                    body = client.get(f"/v1/submissions/{reference}").json()
                    if body["deliveries"] and all(d["state"] in ("delivered", "parked") for d in body["deliveries"]):
                        settled[reference] = body
                if len(settled) == len(references):
                    return settled
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(references) - len(settled)} of {len(references)} not settled after {timeout} s")
                time.sleep(0.2)

    def close(self) -> None:
        for name in list(self._procs):
            proc = self._procs.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            self.after_stop(name)
        for server in self._servers:
            server.stop()


def hub_processes(workdir: Path, database_url: str, broker_url: str, launcher: Callable[[str], list[str]] = from_checkout,
                  after_stop: Callable[[str], None] = lambda name: None,
                  env_changes: dict[str, str | None] | None = None) -> HubProcesses:
    """The processes' settings, the CRM simulators and a migrated database; `env_changes` sets
    variables, or drops those given None."""
    crm, garden = CrmState(token="crm-" + secrets.token_hex(8)), CrmState(token="gw-" + secrets.token_hex(8))
    servers = [ServerThread(create_crm(crm)).start(), ServerThread(create_crm(garden)).start()]
    key = "e2e-key-" + secrets.token_hex(8)
    namespace = "e2e" + secrets.token_hex(3)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
        "HUB_DATABASE_URL": database_url,
        "HUB_BROKER_URL": broker_url,
        "HUB_EXCHANGE": f"{namespace}.deliveries",
        "HUB_QUEUE_PREFIX": f"{namespace}.",
        "HUB_RELAY_SWEEP_SECONDS": "0.2",
        "HUB_DEMO_API_KEY": key,
        # the load these suites drive is about delivery, not rate limits (tests/unit/test_rate_limits.py)
        "HUB_CLIENT_RATE_LIMIT": "100000/second",
        "HUB_TENANT_RATE_LIMIT": "100000/second",
        "CRM_URL": servers[0].url,
        "CRM_API_TOKEN": crm.token or "",
        "GARDEN_WASTE_URL": servers[1].url,
        "GARDEN_WASTE_API_TOKEN": garden.token or "",
    }
    for name, value in (env_changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    hub = HubProcesses(workdir, env, crm, garden, key, _servers=servers, launcher=launcher, after_stop=after_stop)
    hub.migrate()
    return hub
