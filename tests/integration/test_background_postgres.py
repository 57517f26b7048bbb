"""With several workers on one PostgreSQL, a job that asks a back office (status polling) or
purges payloads runs in one process at a time; the others skip that turn."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from hub.background import one_at_a_time
from hub.store.db import make_engine
from tests.support.servers import PostgresServer

_databases = itertools.count()


@pytest.fixture()
def engines(postgres: PostgresServer) -> Iterator[tuple[Engine, Engine]]:
    url = postgres.create_database(f"hub_jobs_{next(_databases)}")
    first, second = make_engine(url), make_engine(url)  # two worker processes' pools
    yield first, second
    first.dispose()
    second.dispose()


def test_a_job_runs_in_one_worker_at_a_time_and_the_other_skips_its_turn(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    started, release = threading.Event(), threading.Event()
    polls: list[str] = []

    def slow_poll() -> None:
        polls.append("first")
        started.set()
        release.wait(10)

    running = threading.Thread(target=one_at_a_time(first, "status-poll", slow_poll))
    running.start()
    assert started.wait(10)
    # while the first worker polls, the second worker's turn is skipped, not queued
    assert one_at_a_time(second, "status-poll", lambda: polls.append("second"))() is False
    # another job is not held up by it
    assert one_at_a_time(second, "retention", lambda: polls.append("retention"))() is True
    release.set()
    running.join(10)
    assert one_at_a_time(second, "status-poll", lambda: polls.append("second"))() is True
    assert polls == ["first", "retention", "second"]


def test_a_failing_run_gives_the_job_back(engines: tuple[Engine, Engine]) -> None:
    first, second = engines

    def broken() -> None:
        raise RuntimeError("the back office answered nonsense")

    with pytest.raises(RuntimeError):
        one_at_a_time(first, "status-poll", broken)()
    assert one_at_a_time(second, "status-poll", lambda: None)() is True
