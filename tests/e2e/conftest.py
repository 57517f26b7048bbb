from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import HubProcesses, hub_processes
from tests.support.servers import PostgresServer, RabbitMQServer

_count = 0


@pytest.fixture()
def stack(tmp_path: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[HubProcesses]:
    """A fresh database and queue namespace per test, on the session's real servers."""
    global _count
    _count += 1
    database_url = postgres.create_database(f"hub_e2e_{_count}")
    hub = hub_processes(tmp_path, database_url, rabbitmq.url)
    try:
        yield hub
    finally:
        hub.close()
