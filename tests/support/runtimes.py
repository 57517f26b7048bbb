"""A hub runtime on the tests' real PostgreSQL and RabbitMQ, in a database and broker namespace of
its own, for integration tests that drive the hub's parts in-process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hub.config.settings import Settings
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from tests.support.servers import PostgresServer, RabbitMQServer


@contextmanager
def real_runtime(postgres: PostgresServer, rabbitmq: RabbitMQServer, name: str, **settings: Any) -> Iterator[Runtime]:
    """`name` prefixes the database, exchange and queues; `settings` add to or override the rest."""
    namespace = name + secrets.token_hex(3)
    runtime = Runtime.build(
        Settings(
            database_url=postgres.create_database(f"hub_{namespace}"),
            broker_url=rabbitmq.url,
            exchange=f"{namespace}.deliveries",
            queue_prefix=f"{namespace}.",
            **settings,
        ),
        {**os.environ, "HUB_DEMO_API_KEY": "k" * 20},
    )
    upgrade(runtime.engine)
    try:
        yield runtime
    finally:
        runtime.close()
