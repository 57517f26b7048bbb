"""The relay against a real RabbitMQ and PostgreSQL: confirmed publishing to quorum queues,
and rows kept while the broker is away."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from itertools import count

import pytest
from kombu.connection import Connection
from sqlalchemy import func, select

from hub.config.settings import Settings
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store import submissions as store
from hub.store.migrate import upgrade
from hub.store.tables import outbox
from tests.support.servers import PostgresServer, RabbitMQServer

_databases = count(1)


@pytest.fixture()
def runtime(postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[Runtime]:
    namespace = "relay" + secrets.token_hex(3)
    settings = Settings(
        database_url=postgres.create_database(f"hub_relay_{next(_databases)}"),
        broker_url=rabbitmq.url,
        exchange=f"{namespace}.deliveries",
        queue_prefix=f"{namespace}.",
        relay_batch=7,
    )
    runtime = Runtime.build(settings, {**os.environ, "HUB_DEMO_API_KEY": "k" * 20})
    upgrade(runtime.engine)
    yield runtime
    runtime.close()


def accept(runtime: Runtime, n: int) -> None:
    for _ in range(n):
        store.accept(
            runtime.engine,
            store.NewSubmission("eastmoor", "demo-portal", "missed-bin-collection", 1, runtime.sealer.seal({}), "0" * 64, None, ["crm"], "EDC"),
        )


def backlog(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def test_the_relay_publishes_every_due_row_to_the_connectors_quorum_queue_and_removes_it(runtime: Runtime, rabbitmq: RabbitMQServer) -> None:
    accept(runtime, 20)
    relay = Relay(runtime)
    try:
        assert relay.run_once() == 20
    finally:
        relay.stop()
    assert backlog(runtime) == 0
    queue_name = f"{runtime.settings.queue_prefix}crm"
    # (the broker's message counts for quorum queues lag, so the messages are counted by reading them)
    listing = rabbitmq.ctl("list_queues", "name", "type", "durable", "--quiet").stdout
    assert any(line.split() == [queue_name, "quorum", "true"] for line in listing.splitlines()), listing
    with Connection(rabbitmq.url) as conn:
        bodies = []
        queue = runtime.topology.queue("crm")(conn.default_channel)
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
