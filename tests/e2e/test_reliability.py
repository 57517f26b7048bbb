"""Retries that wait in RabbitMQ delay queues, graceful shutdown, and crash loops parked by the
broker's delivery limit: real `hub` processes, real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import json
import signal
import time

from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.support.processes import HubProcesses
from tests.support.servers import RabbitMQServer

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


def submit(stack: HubProcesses) -> str:
    with stack.client() as client:
        response = client.post("/v1/forms/missed-bin-collection/submissions", json=SAMPLE)
    assert response.status_code == 202
    return str(response.json()["reference"])


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_retry_waits_in_a_delay_queue_holding_no_worker_then_delivers(stack: HubProcesses, rabbitmq: RabbitMQServer) -> None:
    stack.start_api()
    stack.start_worker()
    stack.crm.arm(FailurePlan(count=2, mode="status", status=503))
    reference = submit(stack)
    [delivery] = stack.wait_settled([reference])[reference]["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3
    assert stack.crm.stats() == {"cases": 1, "requests": 3, "duplicates": 0}
    queues = rabbitmq.ctl("list_queues", "name", "type", "messages_unacknowledged", "--quiet").stdout
    prefix = stack.env["HUB_QUEUE_PREFIX"]
    delay_queues = [line.split() for line in queues.splitlines() if line.startswith(f"{prefix}crm.delay.")]
    assert delay_queues, queues
    assert all(fields[1] == "quorum" for fields in delay_queues)


def test_sigterm_lets_the_worker_finish_the_delivery_in_hand_and_exit(stack: HubProcesses) -> None:
    stack.start_api()
    worker = stack.start_worker("worker", "--grace", "20")
    stack.crm.arm(FailurePlan(count=1, mode="hang", seconds=3))
    reference = submit(stack)
    wait_for(lambda: stack.crm.stats()["requests"] == 1, what="the CRM to receive the record")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert 2 <= time.monotonic() - started < 20
    [delivery] = stack.wait_settled([reference], timeout=10)[reference]["deliveries"]
    assert delivery["state"] == "delivered"
    # finished, not abandoned: no second request was needed
    assert stack.crm.stats() == {"cases": 1, "requests": 1, "duplicates": 0}


def test_a_delivery_that_keeps_killing_workers_is_parked_by_the_delivery_limit(stack: HubProcesses) -> None:
    stack.env["HUB_DELIVERY_LIMIT"] = "1"
    stack.start_api()
    stack.crm.arm(FailurePlan(count=100, mode="hang", seconds=60))
    reference = submit(stack)
    for attempt in (1, 2):
        stack.start_worker(f"worker-{attempt}")
        wait_for(lambda: stack.crm.stats()["requests"] == attempt, what=f"request {attempt}")
        stack.kill(f"worker-{attempt}")
    stack.crm.arm(FailurePlan(count=0))
    stack.start_worker("worker-3")
    [delivery] = stack.wait_settled([reference], timeout=60)[reference]["deliveries"]
    assert delivery["state"] == "parked"
    assert "broker delivery limit" in delivery["last_error"]
    assert stack.crm.stats()["requests"] == 2


def test_a_dead_lettered_message_of_several_deliveries_is_split_so_none_is_parked_for_another(stack: HubProcesses) -> None:
    stack.env["HUB_DELIVERY_LIMIT"] = "1"
    # three submissions stored while the relay cannot reach the broker, so that they leave in one message
    broker_url, stack.env["HUB_BROKER_URL"] = stack.env["HUB_BROKER_URL"], "amqp://guest:guest@127.0.0.1:9//"
    stack.start_api("api-offline")
    references = [submit(stack) for _ in range(3)]
    stack.kill("api-offline")
    stack.api_urls.pop(0)
    stack.env["HUB_BROKER_URL"] = broker_url
    stack.crm.arm(FailurePlan(count=100, mode="hang", seconds=60))
    stack.start_api()
    for attempt in (1, 2):  # workers die with all three in hand, twice: the broker dead-letters the message
        stack.start_worker(f"worker-{attempt}")
        wait_for(lambda: stack.crm.stats()["requests"] == 3 * attempt, what=f"requests of round {attempt}")
        stack.kill(f"worker-{attempt}")
    stack.crm.arm(FailurePlan(count=0))
    stack.start_worker("worker-3")
    settled = stack.wait_settled(references, timeout=60)
    # which of the three stopped the workers is unknown: each went back alone, and each was delivered
    assert [d["state"] for reference in references for d in settled[reference]["deliveries"]] == ["delivered"] * 3
    assert '"dead_letter_split"' in stack.log("worker-3")
    assert stack.crm.stats()["cases"] == 3
