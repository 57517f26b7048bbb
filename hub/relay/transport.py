"""RabbitMQ topology and connections: a direct exchange, a durable quorum queue per connector,
delay queues for retries that wait, and a dead-letter queue per connector for crash loops.

The same code runs on kombu's in-process `memory://` transport for the demo; that transport has
no message TTL or dead-lettering, so there retries wait in the outbox instead (`supports_delay`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from hub.config.settings import Settings

# delay queue TTLs in ms, each 1.5 times the last, from 0.5 s to about 94 minutes: a retry waits in
# the longest one not over its backoff, and any remainder is waited out on its return
DELAY_TIERS_MS = tuple(int(500 * 1.5**n) for n in range(0, 24))


class Topology:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        prefix = settings.queue_prefix
        self.exchange = Exchange(settings.exchange, type="direct", durable=True)
        self.dead_exchange = Exchange(f"{settings.exchange}.dead", type="direct", durable=True)
        self.delay_exchange = Exchange(f"{settings.exchange}.delay", type="direct", durable=True)
        self._prefix = prefix

    @property
    def in_process(self) -> bool:
        return self.settings.broker_url.startswith("memory://")

    @property
    def supports_delay(self) -> bool:
        return not self.in_process

    def _quorum(self, **extra: Any) -> dict[str, Any]:
        if self.in_process or not self.settings.quorum_queues:
            return {}
        return {"x-queue-type": "quorum", **extra}

    def queue(self, connector: str) -> Queue:
        # a message that crashes workers over and over is dead-lettered after `delivery_limit`
        # deliveries, at least once, to the connector's dead queue where the worker parks it
        arguments = self._quorum(
            **{
                "x-delivery-limit": self.settings.delivery_limit,
                "x-dead-letter-exchange": self.dead_exchange.name,
                "x-dead-letter-routing-key": connector,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
        return Queue(f"{self._prefix}{connector}", exchange=self.exchange, routing_key=connector, durable=True, queue_arguments=arguments)

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

    def connect(self) -> Connection:
        # publisher confirms make publish() return only once the broker has the message;
        # several URLs separated by ";" are tried in turn (a cluster's nodes)
        return Connection(
            self.settings.broker_url,
            connect_timeout=self.settings.broker_connect_timeout,
            transport_options={"confirm_publish": True, "polling_interval": 0.01},
            heartbeat=0,
        )

    def reachable(self) -> bool:
        """Whether a connection to the broker opens now (the in-process broker always does)."""
        if self.in_process:
            return True
        try:
            with self.connect() as connection:
                connection.ensure_connection(max_retries=self.hosts())
            return True
        except Exception:
            return False

    def hosts(self) -> int:
        return self.settings.broker_url.count(";") + 1

    def declare(self, connection: Connection, connectors: Iterable[str]) -> None:
        """Declares the exchanges, every connector's work queue and dead queue (idempotent)."""
        channel = connection.default_channel
        for exchange in (self.exchange, self.dead_exchange, self.delay_exchange):
            exchange(channel).declare()
        for connector in connectors:
            self.queue(connector)(channel).declare()
            if not self.in_process:
                self.dead_queue(connector)(channel).declare()


class BatchPublisher:
    """Publishes a batch of messages and then waits once for the broker's confirms of all of it.

    Waiting for a confirm after every message caps a publisher at ~1.5-2k/s; publishing the
    batch and collecting the (usually `multiple`) acks afterwards is where the speed comes from.
    On the in-process transport there are no confirms: messages are handed over directly.
    """

    def __init__(self, topology: Topology, confirm_timeout: float = 30.0) -> None:
        self._topology = topology
        self._timeout = confirm_timeout
        self._connection = Connection(
            topology.settings.broker_url,
            connect_timeout=topology.settings.broker_connect_timeout,
            transport_options={"polling_interval": 0.01},
            heartbeat=0,
        )
        self._unconfirmed: set[int] = set()
        self._nacked = 0
        self._next_tag = 1
        self._channel: Any = None
        self._producer: Any = None

    def connect(self, connectors: Iterable[str]) -> None:
        self._connection.ensure_connection(max_retries=self._topology.hosts())
        self._topology.declare(self._connection, connectors)
        if self._topology.in_process:
            from kombu.messaging import Producer

            self._producer = Producer(self._connection.default_channel)
            return
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
        if self._producer is not None:
            for routing_key, body in messages:
                self._producer.publish(body, exchange=exchange, routing_key=routing_key, content_type="application/json", content_encoding="utf-8", delivery_mode=2, retry=False)
            return
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
        try:
            self._connection.release()
        except Exception:  # already broken; nothing more to release
            pass


class BrokerCheck:
    """`Topology.reachable()` for probes, remembered for a few seconds: probes every few seconds
    from every pod should not each open a connection to the broker."""

    def __init__(self, topology: Topology, remember_seconds: float = 5.0) -> None:
        self._topology = topology
        self._remember = remember_seconds
        self._checked_at = -remember_seconds
        self._ok = False
        self._lock = threading.Lock()

    def reachable(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at >= self._remember:
                self._ok = self._topology.reachable()
                self._checked_at = time.monotonic()
            return self._ok
