"""RabbitMQ topology and connections: a direct exchange, a durable quorum queue per connector,
delay queues for retries that wait, and a dead-letter queue per connector for crash loops.

The same code runs on kombu's in-process `memory://` transport for the demo; that transport has
no message TTL or dead-lettering, so there retries wait in the outbox instead (`supports_delay`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from hub.settings import Settings

# delay queue TTLs in ms, each 1.5 times the last, from 0.5 s to about 3 hours: a retry waits in
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
