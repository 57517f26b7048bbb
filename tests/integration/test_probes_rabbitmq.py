"""The probes Kubernetes and compose ask, against a real RabbitMQ and PostgreSQL: the api's
/readyz reports the broker and keeps serving while it is away (intake stores into the outbox);
the worker's port answers /readyz only while it consumes, and /healthz while its loop turns."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.delivery import probes
from hub.delivery.worker import Worker
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from tests.support.runtimes import real_runtime
from tests.support.servers import PostgresServer, RabbitMQServer


@pytest.fixture()
def runtime(postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[Runtime]:
    with real_runtime(postgres, rabbitmq, "probes", broker_connect_timeout=1.0) as runtime:
        yield runtime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.1)


def test_the_api_reports_the_broker_and_stays_ready_while_it_is_down(runtime: Runtime, rabbitmq: RabbitMQServer) -> None:
    api = ServerThread(create_app(runtime, Relay(runtime))).start()
    try:
        ready = httpx.get(f"{api.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True, "relay": True}
        rabbitmq.stop()
        try:
            # the answer is remembered for 5 s, so probes from every pod do not each open a connection
            eventually(lambda: httpx.get(f"{api.url}/readyz", timeout=10).json()["checks"]["broker"] is False)
            down = httpx.get(f"{api.url}/readyz", timeout=10)
            assert down.status_code == 200 and down.json() == {"ready": True, "checks": {"database": True, "broker": False, "relay": True}}
        finally:
            rabbitmq.start()
    finally:
        api.stop()


def test_the_workers_probes_follow_its_broker_connection(runtime: Runtime, rabbitmq: RabbitMQServer) -> None:
    worker = Worker(runtime, ["crm"])
    port = free_port()
    server = probes.serve(worker, "127.0.0.1", port)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop, 2.0), daemon=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # not consuming yet: not ready, and the orchestrator sends it no work it could not take
        assert httpx.get(f"{url}/readyz").json() == {"ready": False, "checks": {"broker": False, "database": True}}
        thread.start()
        eventually(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        assert httpx.get(f"{url}/readyz").json() == {"ready": True, "checks": {"broker": True, "database": True}}
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert "hub_" in httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/other").status_code == 404
        rabbitmq.stop()
        try:
            eventually(lambda: httpx.get(f"{url}/readyz").status_code == 503)
            assert httpx.get(f"{url}/readyz").json()["checks"]["broker"] is False
            # waiting out the outage is not being stuck: the liveness probe must not restart it
            time.sleep(1.5)
            assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        finally:
            rabbitmq.start()
        eventually(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=30)
    finally:
        stop.set()
        thread.join(10)
        server.shutdown()
