"""The whole hub in the test process on its embedded default: SQLite, kombu's memory transport,
CRM simulators on loopback. Fast enough for every HTTP-level behaviour that needs no real server.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kombu import Connection

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.config.files import CircuitPolicy, RetryPolicy, load_config
from hub.config.settings import Settings
from hub.delivery.worker import Worker
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from simulators.crm import CrmState
from simulators.crm import create_app as create_crm

FAST_RETRY = RetryPolicy(max_attempts=3, base_seconds=0.05, cap_seconds=0.2)
# out of the way unless a test is about the circuit breaker
LENIENT_CIRCUIT = CircuitPolicy(failure_threshold=1000, open_seconds=1.0)


@dataclass
class EmbeddedHub:
    url: str
    runtime: Runtime
    crm: CrmState
    garden: CrmState
    key: str
    westvale_key: str
    staff_token: str
    westvale_staff_token: str
    relay: Relay
    # the ASGI app itself, for tests that look at its state (caches)
    app: Any = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def post(self, form_id: str, payload: Any, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}", **kwargs.pop("headers", {})}
        return self.client.post(f"/v1/forms/{form_id}/submissions", json=payload, headers=headers, **kwargs)

    def admin(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.staff_token}"}
        return self.client.request(method, f"/v1/admin{path}", headers=headers, **kwargs)

    def status(self, reference: str, key: str | None = None) -> httpx.Response:
        return self.client.get(f"/v1/submissions/{reference}", headers={"Authorization": f"Bearer {key or self.key}"})

    def wait_until_settled(self, reference: str, timeout: float = 15.0) -> dict[str, Any]:
        """Polls the status as a front end would, until no delivery is pending or retrying."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.status(reference).json()
            if body["deliveries"] and all(d["state"] in ("delivered", "parked") for d in body["deliveries"]):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{reference} not settled after {timeout} s: {body}")
            time.sleep(0.05)


@contextmanager
def embedded_hub(
    tmp_path: Path,
    max_body_bytes: int = 1024 * 1024,
    circuit: CircuitPolicy | None = None,
    env: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
    database_url: str | None = None,
) -> Iterator[EmbeddedHub]:
    """`env` adds to (or overrides) the environment the configuration is read with: endpoints
    and credentials of further simulators a test starts. `config_dir` replaces config/;
    `database_url` a fresh database (a real PostgreSQL one) instead of SQLite."""
    crm, garden = CrmState(token="crm-token-" + secrets.token_hex(4)), CrmState(token="gw-token-" + secrets.token_hex(4))
    crm_server, garden_server = ServerThread(create_crm(crm)).start(), ServerThread(create_crm(garden)).start()
    key, westvale_key = "demo-key-" + secrets.token_hex(8), "westvale-key-" + secrets.token_hex(8)
    staff_token, westvale_staff_token = "staff-" + secrets.token_hex(8), "wv-staff-" + secrets.token_hex(8)
    env = {
        "DEMO_STAFF_TOKEN": staff_token,
        "WESTVALE_STAFF_TOKEN": westvale_staff_token,
        "HUB_DEMO_API_KEY": key,
        "WESTVALE_API_KEY": westvale_key,
        "CRM_URL": crm_server.url,
        "CRM_API_TOKEN": crm.token or "",
        "GARDEN_WASTE_URL": garden_server.url,
        "GARDEN_WASTE_API_TOKEN": garden.token or "",
        **(env or {}),
    }
    # each test gets its own in-process broker namespace, so no message leaks between tests
    settings = Settings(
        database_url=database_url or f"sqlite:///{tmp_path / 'hub.db'}",
        broker_url="memory://",
        queue_prefix=f"t{secrets.token_hex(4)}.",
        exchange=f"t{secrets.token_hex(4)}.deliveries",
        max_body_bytes=max_body_bytes,
        relay_sweep_seconds=0.05,
        **({"config_dir": config_dir} if config_dir is not None else {}),
    )
    config = load_config(settings.config_dir, env)
    for name, connector in list(config.connectors.items()):
        config.connectors[name] = connector.model_copy(update={"retry": FAST_RETRY, "circuit": circuit or LENIENT_CIRCUIT})
    runtime = Runtime.build(settings, env, config=config)
    upgrade(runtime.engine)
    relay = Relay(runtime)
    app = create_app(runtime, relay)
    api = ServerThread(app).start()
    stop = threading.Event()
    worker = Worker(runtime, concurrency=4)
    thread = threading.Thread(target=worker.run, args=(stop, 2.0), daemon=True)
    thread.start()
    hub = EmbeddedHub(api.url, runtime, crm, garden, key, westvale_key, staff_token, westvale_staff_token, relay, app)
    try:
        yield hub
    finally:
        stop.set()
        thread.join(10)
        hub.client.close()
        api.stop()
        crm_server.stop()
        garden_server.stop()
        runtime.close()
        with Connection("memory://") as conn:
            for name in runtime.connector_names():
                try:
                    runtime.topology.queue(name)(conn.default_channel).delete()
                except Exception:
                    pass
