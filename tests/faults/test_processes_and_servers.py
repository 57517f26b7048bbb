"""Fault injection against the hub's real processes, RabbitMQ and PostgreSQL. Each test drives a
stream of submissions into the CRM simulator and ends by counting effects per submission."""

from __future__ import annotations

import json
import random
import threading
import time

from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.faults.counting import Tally, assert_nothing_lost_or_doubled
from tests.support.processes import HubProcesses
from tests.support.servers import PostgresServer, RabbitMQServer

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


def in_background(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_killing_a_worker_five_times_during_two_thousand_submissions_loses_and_doubles_nothing(stack: HubProcesses) -> None:
    stack.start_api("api-1")
    stack.start_api("api-2")
    stack.start_worker("worker-a", "--concurrency", "8")
    stack.start_worker("worker-b", "--concurrency", "8")
    # each request takes a little while, so kills land mid-delivery
    stack.crm.arm(FailurePlan(count=2000, mode="hang", seconds=0.1))
    tally = Tally()
    posting = in_background(tally.post_stream, stack, SAMPLE, 2000, 150.0)
    rng = random.Random(4)
    for kill in range(5):
        time.sleep(2.0)
        victim = rng.choice(["worker-a", "worker-b"])
        stack.kill(victim)
        stack.start_worker(victim, "--concurrency", "8")
    posting.join()
    assert len(tally.accepted) == 2000 and not tally.refused
    counts = assert_nothing_lost_or_doubled(stack, tally.accepted, timeout=240)
    assert counts["deliveries_delivered"] == 2000


def test_rabbitmq_restarted_while_publishing_and_while_consuming_loses_nothing(stack: HubProcesses, rabbitmq: RabbitMQServer) -> None:
    stack.start_api()
    stack.start_worker()
    tally = Tally()
    # publishing: the broker goes away while submissions are arriving
    posting = in_background(tally.post_stream, stack, SAMPLE, 300, 60.0)
    time.sleep(1.5)
    rabbitmq.stop()
    time.sleep(2)
    rabbitmq.start()
    posting.join()
    assert len(tally.accepted) == 300 and not tally.refused
    # consuming: slow the back office so a backlog is being worked through, then restart the broker
    stack.crm.arm(FailurePlan(count=10_000, mode="hang", seconds=0.05))
    more = Tally()
    more.post_stream(stack, SAMPLE, 300)
    time.sleep(2)
    assert stack.crm.stats()["requests"] < 600, "the backlog was already worked through"
    rabbitmq.stop()
    time.sleep(2)
    rabbitmq.start()
    assert_nothing_lost_or_doubled(stack, tally.accepted + more.accepted, timeout=240)
    assert "relay_paused" in stack.log("api") and "worker_disconnected" in stack.log("worker")


def test_postgresql_restarted_during_intake_refuses_plainly_and_loses_no_accepted_submission(stack: HubProcesses, postgres: PostgresServer) -> None:
    stack.start_api()
    stack.start_worker()
    tally = Tally()
    posting = in_background(tally.post_stream, stack, SAMPLE, 600, 60.0, 4)
    time.sleep(2)
    postgres.stop()
    time.sleep(3)
    postgres.start()
    posting.join()
    print("refused while the database was down:", tally.refused)
    assert tally.refused.get(503, 0) > 0, "no request met the outage"
    assert set(tally.refused) <= {503}
    assert len(tally.accepted) + tally.refused[503] == 600
    assert_nothing_lost_or_doubled(stack, tally.accepted, timeout=120)
    assert "database_unavailable" in stack.log("api")


def test_postgresql_away_for_half_a_minute_while_workers_deliver_parks_nothing(stack: HubProcesses, postgres: PostgresServer) -> None:
    # a database failover takes tens of seconds: deliveries whose outcomes cannot be stored go back
    # to the queue, and each return counts toward its delivery limit, so a worker handing them back
    # every few seconds would have them parked as poison by the end (a limit of 5 here, 20 by
    # default, makes the outage shorter than one that would reach 20)
    stack.env["HUB_DELIVERY_LIMIT"] = "5"
    stack.start_api()
    stack.start_worker("worker", "--concurrency", "4")
    stack.crm.arm(FailurePlan(count=10_000, mode="hang", seconds=0.2))
    tally = Tally()
    tally.post_stream(stack, SAMPLE, 200)
    assert len(tally.accepted) == 200
    time.sleep(1)
    assert stack.crm.stats()["requests"] < 200, "the backlog was already worked through"
    postgres.stop()
    time.sleep(30)
    postgres.start()
    stack.crm.arm(FailurePlan(count=0))
    counts = assert_nothing_lost_or_doubled(stack, tally.accepted, timeout=180)
    assert counts["deliveries_delivered"] == 200, counts
    assert "worker_waiting_for_database" in stack.log("worker")


def test_a_back_office_down_then_timing_out_then_back_opens_and_closes_the_circuit_and_delivers_everything(stack: HubProcesses) -> None:
    stack.override_connector(
        "crm",
        retry={"max_attempts": 30, "base_seconds": 0.5, "cap_seconds": 4},
        circuit={"failure_threshold": 5, "open_seconds": 3},
        options={"timeout_seconds": 1},
    )
    stack.start_api()
    stack.start_worker()
    stack.crm.arm(FailurePlan(count=1_000_000, mode="status", status=503))
    tally = Tally()
    in_background(tally.post_stream, stack, SAMPLE, 100, 5.0).join(timeout=0)
    time.sleep(30)
    assert stack.crm.stats()["cases"] == 0
    stack.crm.arm(FailurePlan(count=1_000_000, mode="timeout", seconds=2))
    time.sleep(10)
    stack.crm.arm(FailurePlan(count=0))
    deadline = time.monotonic() + 60
    while len(tally.accepted) < 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    counts = assert_nothing_lost_or_doubled(stack, tally.accepted, timeout=120)
    assert counts["deliveries_delivered"] == 100
    log = stack.log("worker")
    assert log.count("circuit_opened") >= 2 and "circuit_closed" in log
    # while open, the back office was spared: far fewer requests than deliveries x attempts
    assert stack.crm.stats()["requests"] < 100 * 5


def test_a_poison_message_parks_after_one_attempt_and_the_queue_keeps_flowing(stack: HubProcesses) -> None:
    import shutil

    mappings = stack.workdir / "mappings"
    shutil.copytree(Settings().mappings_dir, mappings)
    path = mappings / "missed-bin-collection.crm.yaml"
    # a mapping that cannot handle glass: its code table lacks the code and has no default
    path.write_text(path.read_text().replace("    glass: Glass (green box)\n", ""))
    stack.env["HUB_MAPPINGS_DIR"] = str(mappings)
    stack.start_api()
    stack.start_worker()
    poison = Tally()
    poison.post_stream(stack, dict(SAMPLE, bin_type="glass"), 1)
    healthy = Tally()
    healthy.post_stream(stack, SAMPLE, 50)
    settled = stack.wait_settled(poison.accepted + healthy.accepted)
    [parked] = settled[poison.accepted[0]]["deliveries"]
    assert parked["state"] == "parked" and parked["attempts"] == 1
    assert "bin_type" in parked["last_error"] and "glass" in parked["last_error"]
    assert_nothing_lost_or_doubled(stack, healthy.accepted)
