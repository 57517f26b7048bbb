# mypy: disallow-untyped-calls=False
# (kombu has no type hints)
"""A runnable fake revenues and benefits system that consumes the hub's AMQP pushes from its own
queue bound to its exchange, acknowledges each one and drops resends by message_id.

Real back offices do the same with their own client (see docs/amqp-consumer.md, which uses pika);
this one uses kombu so that the demo can run it on the in-process `memory://` transport.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.message import Message
from kombu.messaging import Consumer

# the names config/revenues-benefits.yaml uses, with the same defaults
URL_ENV = "REVENUES_BENEFITS_AMQP_URL"
EXCHANGE_ENV = "REVENUES_BENEFITS_EXCHANGE"
DEFAULT_EXCHANGE = "revenues-benefits"


@dataclass
class Arrived:
    message_id: str
    routing_key: str
    headers: dict[str, Any]
    record: Any
    times: int = 1


class AmqpBackOffice:
    """Declares `exchange` (as the hub does: durable), its own durable `queue` bound with `binding_key`,
    and consumes in a thread until stopped."""

    def __init__(self, url: str, exchange: str, queue: str, binding_key: str = "#", exchange_type: str = "topic") -> None:
        self.url = url
        self._exchange = Exchange(exchange, type=exchange_type, durable=True)
        self._queue = Queue(queue, exchange=self._exchange, routing_key=binding_key, durable=True)
        self._lock = threading.Lock()
        self._arrived: dict[str, Arrived] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"backoffice-{queue}", daemon=True)
        self.error: BaseException | None = None
        self._last = time.monotonic()

    def start(self, timeout: float = 10.0) -> AmqpBackOffice:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"back office consumer did not start: {self.error!r}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            with Connection(self.url, heartbeat=0) as connection:
                channel = connection.channel()
                # declared before the first delivery, so nothing the hub publishes is unroutable
                self._queue(channel).declare()
                with Consumer(channel, queues=[self._queue], callbacks=[self._on_message], accept=["json"], prefetch_count=10):
                    self._ready.set()
                    while not self._stop.is_set():
                        try:
                            connection.drain_events(timeout=0.2)
                        except TimeoutError:
                            pass
        except BaseException as exc:  # reported by start() or stats(); a simulator must not crash the demo
            self.error = exc
            self._ready.set()

    def _on_message(self, body: Any, message: Message) -> None:
        message_id = str(message.properties.get("message_id") or "")
        with self._lock:
            seen = self._arrived.get(message_id)
            if seen is not None:
                seen.times += 1  # a resend of a record already taken: acknowledged, not processed again
            else:
                self._arrived[message_id] = Arrived(
                    message_id, str(message.delivery_info.get("routing_key", "")), dict(message.headers or {}), body
                )
        message.ack()
        self._last = time.monotonic()

    def settle(self, quiet: float = 0.3, timeout: float = 3.0) -> None:
        """Waits until nothing has arrived for `quiet` seconds: the hub's confirm comes before our ack."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self._last < quiet and time.monotonic() < deadline:
            time.sleep(0.05)

    def arrived(self) -> list[Arrived]:
        with self._lock:
            return list(self._arrived.values())

    def stats(self) -> dict[str, int]:
        with self._lock:
            total = sum(a.times for a in self._arrived.values())
            return {"records": len(self._arrived), "messages": total, "duplicates": total - len(self._arrived)}


class _DemoRevenuesBenefits:
    def __init__(self, office: AmqpBackOffice, exchange: str) -> None:
        self.name = "revenues-benefits (AMQP consumer)"
        self.url = f"memory:// exchange {exchange!r}"
        self.office = office

    def summary(self) -> str:
        self.office.settle()
        stats = self.office.stats()
        kinds: dict[str, int] = {}
        for item in self.office.arrived():
            kinds[item.routing_key] = kinds.get(item.routing_key, 0) + 1
        routes = ", ".join(f"{n} on {key}" for key, n in sorted(kinds.items())) or "nothing"
        problem = f"; consumer failed: {self.office.error!r}" if self.office.error else ""
        return f"{stats['records']} record(s) consumed ({routes}), {stats['duplicates']} resend(s) dropped by message_id{problem}"

    def stop(self) -> None:
        self.office.stop()


def demo(env: dict[str, str]) -> list[_DemoRevenuesBenefits]:
    """The demo's broker is in-process, so the connector's broker URL is `memory://` too."""
    env[URL_ENV] = "memory://"
    exchange = env.get(EXCHANGE_ENV, DEFAULT_EXCHANGE)
    office = AmqpBackOffice("memory://", exchange, queue="revenues-benefits.changes").start()
    return [_DemoRevenuesBenefits(office, exchange)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.backoffice_amqp", description=__doc__)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE)
    parser.add_argument("--queue", default="revenues-benefits.changes")
    parser.add_argument("--binding-key", default="#")
    args = parser.parse_args(argv)
    office = AmqpBackOffice(args.url, args.exchange, args.queue, args.binding_key).start()
    print(f"consuming {args.queue} bound to {args.exchange!r} with {args.binding_key!r}; Ctrl-C to stop", flush=True)
    shown = 0
    try:
        while not office._stop.wait(0.5):
            for item in office.arrived()[shown:]:
                print(json.dumps({"message_id": item.message_id, "routing_key": item.routing_key, "headers": item.headers}), flush=True)
            shown = len(office.arrived())
    except KeyboardInterrupt:
        pass
    finally:
        office.stop()


if __name__ == "__main__":
    main()
