"""Shared fixtures: real RabbitMQ and PostgreSQL servers, the hub's own processes on them, and
markers by folder."""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import HubProcesses, hub_processes
from tests.support.servers import PostgresServer, RabbitMQServer, close_all

TESTS_DIR = Path(__file__).resolve().parent
FOLDER_MARKERS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "faults": "faults", "container": "container", "deploy": "unit"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            continue
        marker = FOLDER_MARKERS.get(folder)
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    # Treat SIGTERM like Ctrl-C: pytest stops, tears fixtures down, and atexit runs close_all().
    raise KeyboardInterrupt(f"signal {signum}")


def _shift_the_clock() -> None:
    """TEST_CLOCK_AHEAD_DAYS=N runs the tests with this process's clock N days ahead (the wall
    clock only: time.time and datetime.now; timeouts keep real time), so a test that writes a
    timestamp the calendar will pass fails now rather than on that day (`make test-future`).
    libfaketime cannot do it for Python 3.11: its clock_nanosleep and timed waits break."""
    days = os.environ.get("TEST_CLOCK_AHEAD_DAYS")
    if not days:
        return
    import time_machine

    traveller = time_machine.travel(datetime.now(UTC) + timedelta(days=int(days)), tick=True)
    traveller.start()
    atexit.register(traveller.stop)


def pytest_configure(config: pytest.Config) -> None:
    # servers.py registers close_all() with atexit; SIGTERM would skip atexit by default.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    _shift_the_clock()


def pytest_report_header(config: pytest.Config) -> str | None:
    days = os.environ.get("TEST_CLOCK_AHEAD_DAYS")
    return f"clock: {days} days ahead (TEST_CLOCK_AHEAD_DAYS), now {datetime.now(UTC).isoformat()}" if days else None


def pytest_unconfigure(config: pytest.Config) -> None:
    close_all()


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQServer]:
    """A running RabbitMQ node for the whole session (`.url`, `.stop()`, `.start()`...)."""
    server = RabbitMQServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the whole session (`.url`, `.create_database()`...)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.close()


_databases = iter(range(1, 1_000_000))


@pytest.fixture()
def stack(tmp_path: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[HubProcesses]:
    """The hub's real processes with a fresh database and queue namespace, on the session's servers."""
    hub = hub_processes(tmp_path, postgres.create_database(f"hub_stack_{next(_databases)}"), rabbitmq.url)
    try:
        yield hub
    finally:
        hub.close()
