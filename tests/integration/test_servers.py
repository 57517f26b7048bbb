"""The test servers themselves: real, durable across restarts, and gone after close()."""

from __future__ import annotations

import secrets
import socket
import threading

import psycopg
import pytest
from kombu import Connection, Exchange, Queue

from tests.support.servers import PostgresServer, RabbitMQServer


def _plain(url: str) -> str:
    """psycopg wants postgresql://, SQLAlchemy's URL says postgresql+psycopg://."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_rabbitmq_keeps_a_persistent_message_on_a_quorum_queue_across_restart(
    rabbitmq: RabbitMQServer,
) -> None:
    name = f"test-quorum-{secrets.token_hex(4)}"
    exchange = Exchange(name, type="direct", durable=True)
    queue = Queue(name, exchange, routing_key=name, durable=True, queue_arguments={"x-queue-type": "quorum"})
    with Connection(rabbitmq.url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        producer.publish(
            {"reference": "CCH-0001"},
            exchange=exchange,
            routing_key=name,
            declare=[queue],
            delivery_mode="persistent",
            retry=False,
        )
    port_before = rabbitmq.port

    rabbitmq.stop()
    with pytest.raises(OSError):
        socket.create_connection((rabbitmq.host, rabbitmq.port), timeout=1).close()
    rabbitmq.start()

    assert rabbitmq.port == port_before
    with Connection(rabbitmq.url) as conn:
        assert f"{name}\tquorum" in rabbitmq.ctl("list_queues", "name", "type").stdout
        simple = conn.SimpleQueue(queue)
        message = simple.get(timeout=10)
        assert message.payload == {"reference": "CCH-0001"}
        message.ack()
        simple.close()
        queue(conn.default_channel).delete()
        exchange(conn.default_channel).delete()


def test_rabbitmqctl_reaches_the_test_node(rabbitmq: RabbitMQServer) -> None:
    done = rabbitmq.ctl("status")
    assert rabbitmq.node_name in done.stdout


def test_postgres_accepts_connections_and_keeps_data_across_restart(postgres: PostgresServer) -> None:
    url = postgres.create_database(f"restart_{secrets.token_hex(4)}")
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE submission (reference text PRIMARY KEY)")
        conn.execute("INSERT INTO submission VALUES ('CCH-0001')")
    port_before = postgres.port

    postgres.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_plain(url), connect_timeout=1)
    postgres.start()

    assert postgres.port == port_before
    with psycopg.connect(_plain(url)) as conn:
        assert conn.execute("SELECT reference FROM submission").fetchall() == [("CCH-0001",)]


def test_postgres_default_database_exists_and_new_databases_start_empty(postgres: PostgresServer) -> None:
    with psycopg.connect(_plain(postgres.url)) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (postgres.dbname,)
    url = postgres.create_database(f"fresh_{secrets.token_hex(4)}")
    with psycopg.connect(_plain(url)) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)


def test_servers_leave_no_process_behind() -> None:
    rabbitmq, postgres = RabbitMQServer(), PostgresServer()
    errors: list[BaseException] = []

    def start(server: RabbitMQServer | PostgresServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in (rabbitmq, postgres)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        if rabbitmq.docker or postgres.docker:
            containers = [rabbitmq.container_id, postgres.container_id]
        else:
            pids = rabbitmq.pids() + postgres.pids()
            assert len(rabbitmq.pids()) >= 2  # the node and its epmd, at least
            assert len(postgres.pids()) >= 2  # the postmaster and its children
    finally:
        rabbitmq.close()
        postgres.close()

    if rabbitmq.docker or postgres.docker:
        import docker

        client = docker.from_env()
        left = [c.id for c in client.containers.list(all=True) if c.id in containers]
        assert left == []
    else:
        left = [pid for pid in pids if _alive(pid)]
        assert left == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
