"""Database engines: PostgreSQL in production, a SQLite file under `var/` for the demo."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # take the write lock when a transaction starts, so two writers never deadlock upgrading
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(
        url,
        # enough for the request threads, so connections are kept rather than opened per request
        pool_size=20,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def answers(engine: Engine) -> bool:
    """Whether the database answers a query now (for probes, and for waiting out an outage)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A connection for a single statement that needs no transaction around it (a read, or a
    write that is atomic by itself): on PostgreSQL it runs in autocommit, saving the BEGIN and
    COMMIT round trips. SQLite keeps its usual transaction."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
        else:
            with conn.begin():
                yield conn


def driver(conn: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy one, for a hot statement written in psycopg's
    own terms: no compiling or result processing per call."""
    return conn.connection.driver_connection


def replanned(conn: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """Runs a batch statement (psycopg's %(name)s parameters) on the driver, planned afresh for
    these parameters and the tables as they are now (about 0.1 ms of the server's CPU). For the
    relay's outbox claims: the outbox swings from empty to a backlog of 100,000 rows, and a
    prepared claim would keep the plan made while it was empty."""
    return driver(conn).execute(sql, params, prepare=False)


class KeptConnection:
    """A PostgreSQL connection kept for the worker's grouped loads and records (in autocommit):
    no pool checkout and no liveness ping per statement, which they would otherwise pay on every
    batch. After any error it is dropped (the caller's work fails and is retried as it would be
    with the database down), and the next use connects afresh.

    Its statements look rows up by primary key, for which a whole-table scan is never the right
    plan, so the session turns scans off. psycopg prepares a statement after five runs and
    PostgreSQL then keeps one generic plan: made while a new database's tables were small, it
    read every delivery by a whole-table scan for as long as the worker ran (3.6 ms a load at
    10,000 rows, against 0.06 ms by index). Planning afresh each time would cost the server
    about 0.4 ms per load and record."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    @contextmanager
    def __call__(self) -> Iterator[Connection]:
        if self._conn is None:
            conn = self.engine.connect()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("SET enable_seqscan = off")
            self._conn = conn
        try:
            yield self._conn
        except BaseException:
            conn, self._conn = self._conn, None
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # already broken: nothing more to release
                pass
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:  # back to the pool as the pool gave it
            conn.exec_driver_sql("RESET enable_seqscan")
        except Exception:
            conn.invalidate()
        conn.close()
