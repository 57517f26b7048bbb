"""The relay against a real RabbitMQ and PostgreSQL: confirmed publishing to quorum queues,
and rows kept while the broker is away."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kombu.connection import Connection
from sqlalchemy import func, select

from hub.config.settings import Settings
from hub.relay.outbox_relay import Relay
from hub.relay.transport import QueueDepth, transport_for
from hub.runtime import Runtime
from hub.store import submissions as store
from hub.store.tables import outbox
from tests.support.runtimes import real_runtime
from tests.support.servers import PostgresServer, RabbitMQServer


@pytest.fixture()
def runtime(postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[Runtime]:
    with real_runtime(postgres, rabbitmq, "relay", relay_batch=7) as runtime:
        yield runtime


def accept(runtime: Runtime, n: int) -> None:
    for _ in range(n):
        store.accept(
            runtime.engine,
            store.NewSubmission("eastmoor", "demo-portal", "missed-bin-collection", 1, runtime.sealer.seal({}), "0" * 64, None, ["crm"], "EDC"),
        )


def relay_once(runtime: Runtime) -> int:
    relay = Relay(runtime)
    try:
        return relay.run_once()
    finally:
        relay.stop()


def backlog(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def test_the_relay_publishes_every_due_row_to_the_connectors_quorum_queue_and_removes_it(runtime: Runtime, rabbitmq: RabbitMQServer) -> None:
    accept(runtime, 20)
    assert relay_once(runtime) == 20
    assert backlog(runtime) == 0
    queue_name = f"{runtime.settings.queue_prefix}crm"
    # (the broker's message counts for quorum queues lag, so the messages are counted by reading them)
    listing = rabbitmq.ctl("list_queues", "name", "type", "durable", "--quiet").stdout
    assert any(line.split() == [queue_name, "quorum", "true"] for line in listing.splitlines()), listing
    with Connection(rabbitmq.url) as conn:
        bodies = []
        queue = runtime.transport.queue("crm")(conn.default_channel)
        while (message := queue.get(no_ack=True)) is not None:
            bodies.append(message.payload)
    # one message per claimed batch of 7, as a message carries up to 10 (HUB_RELAY_DELIVERIES_PER_MESSAGE)
    assert sorted(len(b["delivery_ids"]) for b in bodies) == [6, 7, 7]
    assert len({d for b in bodies for d in b["delivery_ids"]}) == 20 and {b["connector"] for b in bodies} == {"crm"}


def test_rows_stay_in_the_outbox_while_the_broker_is_down(runtime: Runtime, rabbitmq: RabbitMQServer) -> None:
    accept(runtime, 3)
    relay = Relay(runtime)
    rabbitmq.stop()
    try:
        with pytest.raises(Exception):
            relay.run_once()
        assert backlog(runtime) == 3
    finally:
        relay.stop()
        rabbitmq.start()
    relay = Relay(runtime)
    try:
        assert relay.run_once() == 3
    finally:
        relay.stop()
    assert backlog(runtime) == 0


def test_the_broker_reports_each_connectors_queue_depth_and_none_when_it_is_away(runtime: Runtime) -> None:
    transport = runtime.transport
    assert transport.depths(["crm"]) == {"crm": [
        QueueDepth(f"{runtime.settings.queue_prefix}crm", "work", 0, 0, exists=False),
        QueueDepth(f"{runtime.settings.queue_prefix}crm.dead", "dead", 0, 0, exists=False),
    ]}  # a passive declare creates nothing
    accept(runtime, 12)
    assert relay_once(runtime) == 12
    # the relay packs deliveries into messages (up to 10 each, within a batch): 12 rows in batches of 7 are 2 messages
    deadline = time.monotonic() + 10
    while True:  # a quorum queue's count follows its log, so it may trail the confirms a moment
        [work, dead] = transport.depths(["crm"])["crm"]  # type: ignore[index]
        if work.ready == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (work.kind, work.exists, work.ready, work.consumers) == ("work", True, 2, 0)
    assert (dead.kind, dead.exists, dead.ready) == ("dead", True, 0)
    with Connection(runtime.settings.broker_url) as connection:
        queue = transport.queue("crm")(connection.default_channel)
        read = [queue.get(no_ack=True) for _ in range(3)]
    assert [m is not None for m in read] == [True, True, False]
    assert sum(len(json.loads(m.body)["delivery_ids"]) for m in read if m is not None) == 12
    [work, _] = transport.depths(["crm"])["crm"]  # type: ignore[index]
    assert work.ready == 0
    away = Settings(database_url="sqlite://", broker_url="amqp://guest:guest@127.0.0.1:9//", broker_connect_timeout=1)
    assert transport_for(away, runtime.engine).depths(["crm"]) is None
