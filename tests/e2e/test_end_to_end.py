"""The hub as it runs in production: `hub api` and `hub worker` processes, real RabbitMQ and
PostgreSQL, a CRM simulator on loopback. Each test counts what the back office received.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.support.processes import HubProcesses
from tests.support.servers import RabbitMQServer

SCHEMAS = Settings().schemas_dir
SAMPLE = json.loads((SCHEMAS / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


def post_many(stack: HubProcesses, count: int, payload: dict = SAMPLE) -> list[str]:
    """Posts `count` submissions spread over every running API process; returns the references."""
    clients = [stack.client(i) for i in range(len(stack.api_urls))]

    def post(n: int) -> str:
        response = clients[n % len(clients)].post("/v1/forms/missed-bin-collection/submissions", json=payload)
        assert response.status_code == 202, response.text
        return str(response.json()["reference"])

    try:
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(post, range(count)))
    finally:
        for client in clients:
            client.close()


def test_two_hundred_submissions_reach_the_crm_exactly_once_through_several_processes(stack: HubProcesses) -> None:
    stack.start_api("api-1")
    stack.start_api("api-2")
    stack.start_worker("worker-1", "--concurrency", "8")
    stack.start_worker("worker-2", "--concurrency", "8")
    references = post_many(stack, 200)
    settled = stack.wait_settled(references)
    cases = {case["client_unique_identifier"]: case for case in stack.crm.cases()}
    assert stack.crm.stats() == {"cases": 200, "requests": 200, "duplicates": 0}
    for reference in references:
        [delivery] = settled[reference]["deliveries"]
        assert delivery["state"] == "delivered"
        assert delivery["external_reference"] == cases[f"{reference}/crm"]["reference"]


def test_intake_keeps_accepting_while_the_broker_is_down_and_delivers_when_it_returns(
    stack: HubProcesses, rabbitmq: RabbitMQServer
) -> None:
    stack.start_api()
    stack.start_worker()
    rabbitmq.stop()
    try:
        references = post_many(stack, 50)
        assert len(set(references)) == 50
        time.sleep(1)
        assert stack.crm.stats()["requests"] == 0
    finally:
        rabbitmq.start()
    settled = stack.wait_settled(references, timeout=90)
    assert all(s["deliveries"][0]["state"] == "delivered" for s in settled.values())
    assert stack.crm.stats() == {"cases": 50, "requests": 50, "duplicates": 0}
    assert "relay_paused" in stack.log("api") and "worker_disconnected" in stack.log("worker")


def test_a_worker_killed_mid_delivery_is_redelivered_and_the_crm_keeps_one_case(stack: HubProcesses) -> None:
    stack.start_api()
    stack.start_worker("worker-1")
    # the CRM records the case, then hangs before answering: the worker dies while waiting
    stack.crm.arm(FailurePlan(count=1, mode="hang", seconds=30))
    [reference] = post_many(stack, 1)
    deadline = time.monotonic() + 30
    while stack.crm.stats()["requests"] < 1:
        assert time.monotonic() < deadline, "the CRM never received the record"
        time.sleep(0.05)
    stack.kill("worker-1")
    stack.start_worker("worker-2")
    [delivery] = stack.wait_settled([reference], timeout=60)[reference]["deliveries"]
    [case] = stack.crm.cases()
    assert delivery["state"] == "delivered" and delivery["external_reference"] == case["reference"]
    assert case["received_count"] == 2
    assert stack.crm.stats() == {"cases": 1, "requests": 2, "duplicates": 1}


def test_no_personal_data_or_secret_reaches_any_log_line(stack: HubProcesses) -> None:
    stack.start_api()
    stack.start_worker()
    planted = dict(SAMPLE)
    planted["name"] = {"first": "Zebedee", "last": "Quillfeather"}
    planted["email"] = "plant.7f3a9c@example.org"
    planted["phone"] = "07700 900461"
    planted["notes"] = "Gate code 4417, side passage by the shed"
    with stack.client() as client:
        ok = client.post("/v1/forms/missed-bin-collection/submissions", json=planted).json()["reference"]
        stack.wait_settled([ok])
        stack.crm.arm(FailurePlan(count=1, mode="status", status=400))
        parked = client.post("/v1/forms/missed-bin-collection/submissions", json=planted).json()["reference"]
        invalid = {**planted, "email": "not-an-email plant.7f3a9c"}
        assert client.post("/v1/forms/missed-bin-collection/submissions", json=invalid).status_code == 422
    settled = stack.wait_settled([ok, parked])
    assert settled[ok]["deliveries"][0]["state"] == "delivered"
    assert settled[parked]["deliveries"][0]["state"] == "parked"
    logs = stack.all_logs()
    # the logs were written, and carry the references
    assert ok in logs and parked in logs and "delivery_parked" in logs
    for value in ("Zebedee", "Quillfeather", "plant.7f3a9c", "07700 900461", "Gate code 4417", stack.env["CRM_API_TOKEN"], stack.key):
        assert value not in logs, f"{value!r} leaked into a log line"
    for line in logs.splitlines():
        json.loads(line)  # every line is a JSON object


def test_a_worker_for_one_connector_leaves_the_other_connectors_queue_alone(stack: HubProcesses) -> None:
    stack.start_api()
    stack.start_worker("garden-only", "--connector", "garden-waste")
    garden = json.loads((SCHEMAS / "missed-bin-collection" / "samples" / "garden-uprn.json").read_text())
    [reference] = post_many(stack, 1, garden)
    deadline = time.monotonic() + 30
    while stack.garden.stats()["cases"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1)
    assert stack.crm.stats()["requests"] == 0
    stack.start_worker("crm-only", "--connector", "crm")
    states = {d["connector"]: d["state"] for d in stack.wait_settled([reference])[reference]["deliveries"]}
    assert states == {"crm": "delivered", "garden-waste": "delivered"}


def test_a_worker_for_an_unknown_connector_refuses_to_start_and_names_the_known_ones(stack: HubProcesses) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "hub", "worker", "--connector", "crn"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "unknown connector(s) crn; configured: " in result.stderr
    assert "crm, feedback-email, garden-waste" in result.stderr
