"""A three-node RabbitMQ cluster on loopback: the hub's quorum queues keep accepting and delivering
while the node that leads them is stopped, and nothing is lost or doubled when it comes back.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config.settings import Settings
from tests.faults.counting import Tally, assert_nothing_lost_or_doubled
from tests.support.cluster import RabbitMQCluster
from tests.support.processes import HubProcesses, hub_processes
from tests.support.servers import PostgresServer, _alive

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
SUBMISSIONS = 300
RATE = 8.0  # per second: the stream outlasts the node's stop and restart


@pytest.fixture()
def cluster() -> Iterator[RabbitMQCluster]:
    started = RabbitMQCluster().start()
    print(f"three-node cluster started in {started.started_in:.1f} s")
    try:
        yield started
    finally:
        pids = started.pids()
        started.close()
        assert _alive(pids) == [], "a cluster process outlived close()"


@pytest.fixture()
def cluster_stack(tmp_path: Path, postgres: PostgresServer, cluster: RabbitMQCluster) -> Iterator[HubProcesses]:
    database_url = postgres.create_database(f"hub_cluster_{secrets.token_hex(4)}")
    hub = hub_processes(tmp_path, database_url, cluster.url)
    try:
        yield hub
    finally:
        hub.close()


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.timeout(240)
def test_quorum_queues_keep_accepting_and_delivering_while_their_leader_node_is_stopped(
    cluster: RabbitMQCluster, cluster_stack: HubProcesses
) -> None:
    stack = cluster_stack
    began = time.monotonic()
    stack.start_api()
    stack.start_worker("worker", "--concurrency", "8")
    queue = f"{stack.env['HUB_QUEUE_PREFIX']}crm"
    tally = Tally()
    poster = threading.Thread(target=tally.post_stream, args=(stack, SAMPLE, SUBMISSIONS, RATE), daemon=True)
    poster.start()

    wait_for(lambda: stack.crm.stats()["cases"] >= SUBMISSIONS // 4, 60, "the first quarter to reach the CRM")
    leader = cluster.queue_leaders()[queue]
    victim = cluster.index_of(leader)
    stopped_at = time.monotonic()
    cluster.stop_node(victim)
    accepted, cases = len(tally.accepted), stack.crm.stats()["cases"]
    # while the leader's node is down, intake accepts and the new leader delivers
    wait_for(lambda: len(tally.accepted) >= accepted + 40 and stack.crm.stats()["cases"] >= cases + 40, 60,
             "40 more accepted and delivered with the leader's node down")
    new_leader = cluster.queue_leaders()[queue]
    during = {"accepted": len(tally.accepted) - accepted, "delivered": stack.crm.stats()["cases"] - cases}
    cluster.start_node(victim)
    down_for = time.monotonic() - stopped_at

    poster.join(120)
    assert not poster.is_alive(), "the submissions stream did not finish"
    assert tally.refused == {}, f"intake refused submissions: {tally.refused}"
    assert len(tally.accepted) == SUBMISSIONS
    counts = assert_nothing_lost_or_doubled(stack, tally.accepted, timeout=90)
    failovers = {event: stack.all_logs().count(f'"event":"{event}"') for event in ("worker_disconnected", "relay_paused")}
    print(
        f"cluster fault test: leader {leader} stopped for {down_for:.1f} s, new leader {new_leader}; "
        f"while down: {during}; hub failovers: {failovers}; whole run {time.monotonic() - began:.1f} s"
    )
    assert new_leader != leader
    assert counts["deliveries_delivered"] == SUBMISSIONS  # the CRM never failed: nothing should park
    assert sorted(cluster.cluster_members()) == sorted(cluster.node_names)
