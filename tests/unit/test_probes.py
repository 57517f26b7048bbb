"""What the worker's probe port and the broker check answer, without a broker (the real broker's
side is in tests/integration/test_probes_rabbitmq.py)."""

from __future__ import annotations

import json
import socket
import time

from sqlalchemy import create_engine

from hub.config.settings import Settings
from hub.delivery import probes
from hub.delivery.worker import Worker
from hub.relay.transport import BrokerCheck, RabbitTransport, transport_for
from tests.support.embedded import EmbeddedHub


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_worker_whose_loop_stopped_turning_fails_its_liveness_probe(hub: EmbeddedHub) -> None:
    worker = Worker(hub.runtime, ["crm"])
    status, _, body = probes.answer(worker, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    worker.last_beat = time.monotonic() - probes.STALE_SECONDS - 1
    status, _, body = probes.answer(worker, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "stuck" and json.loads(body)["seconds_since_loop"] > probes.STALE_SECONDS


def test_a_worker_is_ready_only_while_it_consumes(hub: EmbeddedHub) -> None:
    worker = Worker(hub.runtime, ["crm"])
    assert probes.answer(worker, "/readyz")[0] == 503
    worker.consuming = True
    status, content_type, body = probes.answer(worker, "/readyz")
    assert (status, content_type, json.loads(body)) == (200, "application/json", {"ready": True, "checks": {"broker": True, "database": True}})


def test_the_broker_check_says_no_for_a_broker_that_does_not_answer_and_remembers_it() -> None:
    down = RabbitTransport(Settings(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port()}//", broker_connect_timeout=1.0))
    assert down.reachable() is False
    memory = Settings(broker_url="memory://")
    assert transport_for(memory, create_engine("sqlite://")).reachable() is True
    asked = []
    down.reachable = lambda: asked.append(1) or False  # type: ignore[method-assign]
    check = BrokerCheck(down, remember_seconds=60)
    assert check.reachable() is False and check.reachable() is False
    # the second answer came from memory, not a second connection to the broker
    assert len(asked) == 1
    assert BrokerCheck(down, remember_seconds=0).reachable() is False and len(asked) == 2
