"""RabbitMQ topology and connections: one direct exchange, one durable quorum queue per connector.

The same code runs on kombu's in-process `memory://` transport for the demo.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from hub.settings import Settings


class Topology:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exchange = Exchange(settings.exchange, type="direct", durable=True)

    def queue(self, connector: str) -> Queue:
        arguments: dict[str, Any] = {}
        if self.settings.quorum_queues and not self.in_process:
            arguments = {"x-queue-type": "quorum"}
        return Queue(
            f"{self.settings.queue_prefix}{connector}",
            exchange=self.exchange,
            routing_key=connector,
            durable=True,
            queue_arguments=arguments,
        )

    @property
    def in_process(self) -> bool:
        return self.settings.broker_url.startswith("memory://")

    def connect(self) -> Connection:
        # publisher confirms make publish() return only once the broker has the message
        return Connection(
            self.settings.broker_url,
            connect_timeout=self.settings.broker_connect_timeout,
            transport_options={"confirm_publish": True},
            heartbeat=0,
        )

    def declare(self, connection: Connection, connectors: Iterable[str]) -> None:
        """Declares the exchange and every connector's queue and binding (idempotent)."""
        channel = connection.default_channel
        self.exchange(channel).declare()
        for connector in connectors:
            self.queue(connector)(channel).declare()
