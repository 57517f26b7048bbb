"""The broker behind one `Transport`: the exchanges and queues the hub uses, its connections, the
relay's publisher, the worker's acks and its waiting retries. Two implementations, and every
difference between the brokers lives inside them:

- `RabbitTransport`: a direct exchange, a durable quorum queue per connector, delay queues for
  retries that wait, a dead-letter queue per connector for crash loops, publisher confirms, and
  acks that cover many messages in one frame.
- `MemoryTransport`: kombu's in-process `memory://` broker for the demo. It has no message TTL,
  dead-lettering or confirms, so a retry waits as an outbox row due when its wait is over (a
  timer in the process would be lost on exit), no dead queues exist, and messages are acked
  one by one.

`transport_for(settings, engine)` picks one by `HUB_BROKER_URL`.
"""

from __future__ import annotations

import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.message import Message
from kombu.messaging import Producer
from sqlalchemy import Engine

from hub.config.settings import Settings
from hub.store import outbox

# delay queue TTLs in ms, each 1.5 times the last, from 0.5 s to about 94 minutes: a retry waits in
# the longest one not over its backoff, and any remainder is waited out on its return
DELAY_TIERS_MS = tuple(int(500 * 1.5**n) for n in range(0, 24))

# what a consumed queue holds: deliveries to attempt, or messages that kept killing workers
QueueKind = Literal["work", "dead"]


@dataclass(frozen=True)
class QueueDepth:
    """What the broker says of one queue now: messages ready to hand out (not those a worker holds
    unacked) and the consumers attached; `exists` is False when no worker has declared it yet."""

    name: str
    kind: QueueKind
    ready: int
    consumers: int
    exists: bool = True


class Publisher(Protocol):
    """The relay's side of the broker: publish a batch, return once the broker has all of it."""

    def connect(self, connectors: Iterable[str]) -> None: ...

    def publish_many(self, messages: list[tuple[str, bytes]], exchange: str) -> None: ...

    def close(self) -> None: ...


class Transport(ABC):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exchange = Exchange(settings.exchange, type="direct", durable=True)
        self._prefix = settings.queue_prefix

    def queue(self, connector: str) -> Queue:
        """The connector's work queue: the relay publishes its deliveries there, workers consume it."""
        return Queue(f"{self._prefix}{connector}", exchange=self.exchange, routing_key=connector, durable=True,
                     queue_arguments=self._work_arguments(connector))

    def hosts(self) -> int:
        return self.settings.broker_url.count(";") + 1

    def connect(self) -> Connection:
        # publisher confirms make publish() return only once the broker has the message;
        # several URLs separated by ";" are tried in turn (a cluster's nodes)
        return Connection(
            self.settings.broker_url,
            connect_timeout=self.settings.broker_connect_timeout,
            transport_options={"confirm_publish": True, "polling_interval": 0.01},
            heartbeat=0,
        )

    @abstractmethod
    def _work_arguments(self, connector: str) -> dict[str, Any]: ...

    def depths(self, connectors: Iterable[str]) -> dict[str, list[QueueDepth]] | None:
        """The broker's own depth of every queue a worker consumes per connector, by a passive
        declare (it creates nothing); None when the broker does not answer."""
        found: dict[str, list[QueueDepth]] = {}
        connection = self.connect()
        try:
            connection.ensure_connection(max_retries=self.hosts())
            channel = connection.channel()
            for connector in connectors:
                found[connector] = []
                for queue, kind in self.consumed(connector):
                    try:
                        _, ready, consumers = channel.queue_declare(queue=queue.name, passive=True)
                    except connection.channel_errors:
                        # a missing queue answers NOT_FOUND, which closes the channel on AMQP
                        found[connector].append(QueueDepth(queue.name, kind, 0, 0, exists=False))
                        channel = connection.channel()
                        continue
                    found[connector].append(QueueDepth(queue.name, kind, int(ready), int(consumers)))
        except (OperationalError, *connection.connection_errors, OSError):
            return None
        finally:
            _release(connection)
        return found

    @abstractmethod
    def reachable(self) -> bool:
        """Whether a connection to the broker opens now."""

    @abstractmethod
    def declare(self, connection: Connection, connectors: Iterable[str]) -> None:
        """Declares the exchanges and every queue a worker consumes (idempotent)."""

    @abstractmethod
    def consumed(self, connector: str) -> list[tuple[Queue, QueueKind]]:
        """The queues a worker consumes for a connector, and what each holds."""

    @abstractmethod
    def publisher(self) -> Publisher: ...

    @abstractmethod
    def ack(self, done: list[Message], oldest_in_hand: int | None) -> None:
        """Acks finished messages of one channel, sorted by delivery tag; `oldest_in_hand` is the
        channel's oldest tag still being worked on (None when there is none)."""

    @abstractmethod
    def delay(self, producer: Producer, connector: str, delivery_id: int, seconds: float) -> None:
        """Makes a delivery come back to the connector's queue after `seconds` (its retry or
        deferral is already stored)."""


class RabbitTransport(Transport):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.dead_exchange = Exchange(f"{settings.exchange}.dead", type="direct", durable=True)
        self.delay_exchange = Exchange(f"{settings.exchange}.delay", type="direct", durable=True)
        # delay queues declared on each channel, declared the first time a retry needs one
        self._declared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    def _quorum(self, **extra: Any) -> dict[str, Any]:
        if not self.settings.quorum_queues:
            return {}
        return {"x-queue-type": "quorum", **extra}

    def _work_arguments(self, connector: str) -> dict[str, Any]:
        # a message that crashes workers over and over is dead-lettered after `delivery_limit`
        # deliveries, at least once, to the connector's dead queue where the worker parks it
        return self._quorum(
            **{
                "x-delivery-limit": self.settings.delivery_limit,
                "x-dead-letter-exchange": self.dead_exchange.name,
                "x-dead-letter-routing-key": connector,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )

    def dead_queue(self, connector: str) -> Queue:
        return Queue(
            f"{self._prefix}{connector}.dead",
            exchange=self.dead_exchange,
            routing_key=connector,
            durable=True,
            queue_arguments=self._quorum(),
        )

    def delay_tier(self, seconds: float) -> int:
        wanted = seconds * 1000
        fitting = [tier for tier in DELAY_TIERS_MS if tier <= wanted]
        return fitting[-1] if fitting else DELAY_TIERS_MS[0]

    def delay_queue(self, connector: str, tier_ms: int) -> Queue:
        name = f"{self._prefix}{connector}.delay.{tier_ms}"
        arguments = {
            "x-message-ttl": tier_ms,
            "x-dead-letter-exchange": self.exchange.name,
            "x-dead-letter-routing-key": connector,
            **self._quorum(**{"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}),
        }
        return Queue(name, exchange=self.delay_exchange, routing_key=name, durable=True, queue_arguments=arguments)

    def reachable(self) -> bool:
        try:
            with self.connect() as connection:
                connection.ensure_connection(max_retries=self.hosts())
            return True
        except Exception:
            return False

    def declare(self, connection: Connection, connectors: Iterable[str]) -> None:
        channel = connection.default_channel
        for exchange in (self.exchange, self.dead_exchange, self.delay_exchange):
            exchange(channel).declare()
        for connector in connectors:
            self.queue(connector)(channel).declare()
            self.dead_queue(connector)(channel).declare()

    def consumed(self, connector: str) -> list[tuple[Queue, QueueKind]]:
        return [(self.queue(connector), "work"), (self.dead_queue(connector), "dead")]

    def publisher(self) -> Publisher:
        return ConfirmingPublisher(self)

    def ack(self, done: list[Message], oldest_in_hand: int | None) -> None:
        # an ack with multiple=True covers every earlier delivery on the channel, so it is used only
        # up to the oldest message still in hand there; later ones are acked one by one
        covered = [m for m in done if oldest_in_hand is None or m.delivery_tag < oldest_in_hand]
        if covered:
            covered[-1].ack(multiple=len(covered) > 1)
        for message in done[len(covered):]:
            message.ack()

    def delay(self, producer: Producer, connector: str, delivery_id: int, seconds: float) -> None:
        queue = self.delay_queue(connector, self.delay_tier(seconds))
        declared = self._declared.setdefault(producer.channel, set())
        if queue.name not in declared:
            queue(producer.channel).declare()
            declared.add(queue.name)
        producer.publish({"delivery_id": delivery_id, "connector": connector}, exchange=self.delay_exchange,
                         routing_key=queue.name, serializer="json", delivery_mode=2, retry=False)


class ConfirmingPublisher:
    """Publishes a batch of messages and then waits once for the broker's confirms of all of it.

    Waiting for a confirm after every message caps a publisher at ~1.5-2k/s; publishing the
    batch and collecting the (usually `multiple`) acks afterwards is where the speed comes from.
    """

    def __init__(self, transport: RabbitTransport, confirm_timeout: float = 30.0) -> None:
        self._transport = transport
        self._timeout = confirm_timeout
        self._connection = Connection(
            transport.settings.broker_url,
            connect_timeout=transport.settings.broker_connect_timeout,
            transport_options={"polling_interval": 0.01},
            heartbeat=0,
        )
        self._unconfirmed: set[int] = set()
        self._nacked = 0
        self._next_tag = 1
        self._channel: Any = None

    def connect(self, connectors: Iterable[str]) -> None:
        self._connection.ensure_connection(max_retries=self._transport.hosts())
        self._transport.declare(self._connection, connectors)
        channel = self._connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._channel = channel

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > tag}
        else:
            self._unconfirmed.discard(tag)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        before = len(self._unconfirmed)
        self._settle(tag, multiple)
        self._nacked += before - len(self._unconfirmed)

    def publish_many(self, messages: list[tuple[str, bytes]], exchange: str) -> None:
        """Publishes (routing key, JSON body) pairs; returns once the broker has confirmed every
        one, and raises if it refused any or did not answer in time."""
        import amqp
        from amqp import spec

        channel = self._channel
        for routing_key, body in messages:
            message = amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2)
            channel.basic_publish(message, exchange=exchange, routing_key=routing_key)
            self._unconfirmed.add(self._next_tag)
            self._next_tag += 1
        deadline = time.monotonic() + self._timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker did not confirm {len(self._unconfirmed)} message(s) in {self._timeout:g} s")
            channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=remaining)
        if self._nacked:
            nacked, self._nacked = self._nacked, 0
            raise RuntimeError(f"the broker refused {nacked} message(s)")

    def close(self) -> None:
        _release(self._connection)


class MemoryTransport(Transport):
    def __init__(self, settings: Settings, engine: Engine) -> None:
        super().__init__(settings)
        self._engine = engine

    def _work_arguments(self, connector: str) -> dict[str, Any]:
        return {}  # no quorum queues, delivery limits or dead-lettering in the process

    def reachable(self) -> bool:
        return True  # the broker is this process

    def declare(self, connection: Connection, connectors: Iterable[str]) -> None:
        channel = connection.default_channel
        self.exchange(channel).declare()
        for connector in connectors:
            self.queue(connector)(channel).declare()

    def consumed(self, connector: str) -> list[tuple[Queue, QueueKind]]:
        return [(self.queue(connector), "work")]

    def publisher(self) -> Publisher:
        return DirectPublisher(self)

    def ack(self, done: list[Message], oldest_in_hand: int | None) -> None:
        # kombu's virtual transports ack one tag whatever `multiple` says
        for message in done:
            message.ack()

    def delay(self, producer: Producer, connector: str, delivery_id: int, seconds: float) -> None:
        # no message TTL here: the wait is an outbox row, which the relay publishes once it is due
        with self._engine.begin() as conn:
            outbox.hold(conn, delivery_id, connector, datetime.now(UTC) + timedelta(seconds=seconds))


class DirectPublisher:
    """Hands messages to the in-process broker: there are no confirms to wait for."""

    def __init__(self, transport: MemoryTransport) -> None:
        self._transport = transport
        self._connection = Connection(transport.settings.broker_url)
        self._producer: Producer | None = None

    def connect(self, connectors: Iterable[str]) -> None:
        self._transport.declare(self._connection, connectors)
        self._producer = Producer(self._connection.default_channel)

    def publish_many(self, messages: list[tuple[str, bytes]], exchange: str) -> None:
        assert self._producer is not None, "connect() first"
        for routing_key, body in messages:
            self._producer.publish(body, exchange=exchange, routing_key=routing_key, content_type="application/json",
                                   content_encoding="utf-8", delivery_mode=2, retry=False)

    def close(self) -> None:
        _release(self._connection)


def _release(connection: Connection) -> None:
    try:
        connection.release()
    except Exception:  # already broken; nothing more to release
        pass


def transport_for(settings: Settings, engine: Engine) -> Transport:
    """The in-process broker for `memory://`, RabbitMQ for anything else."""
    if settings.broker_url.startswith("memory://"):
        return MemoryTransport(settings, engine)
    return RabbitTransport(settings)


class BrokerCheck:
    """`Transport.reachable()` for probes, remembered for a few seconds: probes every few seconds
    from every pod should not each open a connection to the broker."""

    def __init__(self, transport: Transport, remember_seconds: float = 5.0) -> None:
        self._transport = transport
        self._remember = remember_seconds
        self._checked_at = -remember_seconds
        self._ok = False
        self._lock = threading.Lock()

    def reachable(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at >= self._remember:
                self._ok = self._transport.reachable()
                self._checked_at = time.monotonic()
            return self._ok
