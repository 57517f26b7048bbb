"""The broker behind one `Transport`: RabbitMQ and the in-process broker differ only inside it.

The RabbitMQ side runs against a real broker in tests/integration/test_relay_rabbitmq.py and
tests/e2e/test_reliability.py; here are the choices each implementation makes on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kombu.entity import Queue
from sqlalchemy import Engine, create_engine, select

from hub.config.settings import Settings
from hub.relay.transport import MemoryTransport, RabbitTransport, transport_for
from hub.store import outbox
from hub.store.tables import metadata
from hub.store.tables import outbox as outbox_table


class FakeMessage:
    """Stands in for a kombu message: remembers how it was acknowledged."""

    def __init__(self, tag: int, acks: list[tuple[int, bool]]) -> None:
        self.delivery_tag = tag
        self._acks = acks

    def ack(self, multiple: bool = False) -> None:
        self._acks.append((self.delivery_tag, multiple))


def queue_arguments(queue: Queue) -> dict[str, Any]:
    return dict(getattr(queue, "queue_arguments", None) or {})  # kombu sets it from its attrs table


def engine_with_tables(tmp_path: Path) -> Engine:
    # a plain SQLite engine, without the hub's pragmas: foreign keys are not enforced, so an
    # outbox row needs no submission and delivery behind it here
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    metadata.create_all(engine)
    return engine


def test_the_broker_url_picks_the_transport(tmp_path: Path) -> None:
    engine = engine_with_tables(tmp_path)
    assert isinstance(transport_for(Settings(broker_url="memory://"), engine), MemoryTransport)
    assert isinstance(transport_for(Settings(broker_url="amqp://hub@broker-1//;amqp://hub@broker-2//"), engine), RabbitTransport)


def test_rabbitmq_queues_are_quorum_queues_with_a_delivery_limit_and_the_in_process_ones_plain(tmp_path: Path) -> None:
    rabbit = RabbitTransport(Settings(broker_url="amqp://hub@broker//", delivery_limit=7))
    arguments = queue_arguments(rabbit.queue("crm"))
    assert arguments["x-queue-type"] == "quorum" and arguments["x-delivery-limit"] == 7
    assert arguments["x-dead-letter-routing-key"] == "crm"
    assert [(queue.name, kind) for queue, kind in rabbit.consumed("crm")] == [("hub.crm", "work"), ("hub.crm.dead", "dead")]
    memory = MemoryTransport(Settings(broker_url="memory://"), engine_with_tables(tmp_path))
    assert queue_arguments(memory.queue("crm")) == {}
    assert [(queue.name, kind) for queue, kind in memory.consumed("crm")] == [("hub.crm", "work")]


def test_rabbitmq_acks_everything_below_the_oldest_message_in_hand_in_one_frame() -> None:
    acks: list[tuple[int, bool]] = []
    done: list[Any] = [FakeMessage(tag, acks) for tag in (1, 2, 3, 7, 9)]
    RabbitTransport(Settings(broker_url="amqp://hub@broker//")).ack(done, oldest_in_hand=5)
    # 1-3 in one multiple ack; 7 and 9 are past message 5, still in hand, so each is acked alone
    assert acks == [(3, True), (7, False), (9, False)]
    acks.clear()
    RabbitTransport(Settings(broker_url="amqp://hub@broker//")).ack(done[:1], oldest_in_hand=None)
    assert acks == [(1, False)]


def test_the_in_process_broker_acks_each_message_alone(tmp_path: Path) -> None:
    acks: list[tuple[int, bool]] = []
    done: list[Any] = [FakeMessage(tag, acks) for tag in (1, 2, 3)]
    MemoryTransport(Settings(broker_url="memory://"), engine_with_tables(tmp_path)).ack(done, oldest_in_hand=None)
    assert acks == [(1, False), (2, False), (3, False)]


def test_rabbitmq_waits_out_a_retry_in_the_longest_delay_queue_not_over_the_wait() -> None:
    rabbit = RabbitTransport(Settings(broker_url="amqp://hub@broker//"))
    assert rabbit.delay_tier(0.1) == 500
    assert rabbit.delay_tier(8) == 5695
    assert rabbit.delay_queue("crm", 5695).name == "hub.crm.delay.5695"


def test_in_process_a_retry_waits_as_an_outbox_row_the_relay_publishes_once_it_is_due(tmp_path: Path) -> None:
    engine = engine_with_tables(tmp_path)
    memory = MemoryTransport(Settings(broker_url="memory://"), engine)
    delivery_id = 42
    before = datetime.now(UTC)
    memory.delay(producer=None, connector="crm", delivery_id=delivery_id, seconds=30)  # type: ignore[arg-type]
    with engine.begin() as conn:
        assert outbox.claim_due(conn, 10, ["crm"]) == []  # not before its time
        (due,) = conn.execute(select(outbox_table.c.available_at, outbox_table.c.delivery_id)).all()
    available_at = due.available_at.replace(tzinfo=UTC) if due.available_at.tzinfo is None else due.available_at
    assert due.delivery_id == delivery_id
    assert before + timedelta(seconds=29) <= available_at <= datetime.now(UTC) + timedelta(seconds=31)

