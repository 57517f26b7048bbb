"""The worker: consumes each connector's queue and hands every delivery a message carries to the
delivery handler, acknowledging the message only after every one's outcome is committed.

Each connector has its own channel, prefetch and pool of sending threads, so one slow back office
never holds up another. Only the consuming thread talks to the broker (a kombu connection is not
thread-safe): it acknowledges finished messages and moves waiting retries into delay queues.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Any

from kombu.message import Message
from kombu.messaging import Consumer, Producer

from hub.delivery.attempt import DeliveryHandler, Result
from hub.logs import get_logger
from hub.relay.transport import QueueKind
from hub.runtime import Runtime
from hub.store import db

log = get_logger("hub.delivery.worker")

# how long the consuming thread waits for the broker before settling finished deliveries
SETTLE_SECONDS = 0.002
IDLE_SECONDS = 0.05


def delivery_ids(body: Any) -> list[int]:
    """The deliveries a message carries: the relay's `{"delivery_ids": [...]}`, or one
    `{"delivery_id": n}` (a retry back from a delay queue, or a message split after dead-lettering)."""
    if "delivery_ids" in body:
        return [int(delivery_id) for delivery_id in body["delivery_ids"]]
    return [int(body["delivery_id"])]


class _Held:
    """A message in hand: how many of its deliveries are not settled yet, and whether any of
    them could not be recorded (then the whole message goes back to the queue)."""

    __slots__ = ("connector", "failed", "lost", "message", "unsettled")

    def __init__(self, message: Message, connector: str, unsettled: int) -> None:
        self.message = message
        self.connector = connector
        self.unsettled = unsettled
        self.failed = False
        self.lost = False


class Worker:
    def __init__(self, runtime: Runtime, connectors: list[str] | None = None, concurrency: int = 4) -> None:
        self.runtime = runtime
        self.connectors = connectors or runtime.connector_names()
        unknown = sorted(set(self.connectors) - set(runtime.connector_names()))
        if unknown:
            raise ValueError(f"unknown connector(s) {', '.join(unknown)}; configured: {', '.join(runtime.connector_names())}")
        self.concurrency = concurrency
        self.handler = DeliveryHandler(runtime)
        self._done: queue.Queue[tuple[_Held, int, Future[Result]]] = queue.Queue()
        self._in_flight = 0
        # delivery tags received and not yet settled, per channel (the consuming thread's own)
        self._unacked: dict[Any, set[int]] = {}
        self._producer: Any = None
        # for the probes (hub.delivery.probes): consuming from the broker now, and when the
        # consuming thread last came round its loop (monotonic seconds)
        self.consuming = False
        self.last_beat = time.monotonic()
        self._stopping = threading.Event()

    def handle(self, delivery_id: int) -> str:
        """Processes one delivery outside the consuming loop (tests, tools); returns what happened."""
        return self.handler.handle(delivery_id).outcome

    def _budget(self, connector: str) -> int:
        return self.runtime.config.connectors[connector].concurrency or self.concurrency

    def run(self, stop: threading.Event, grace_seconds: float = 30.0) -> None:
        """Consumes until `stop` is set, reconnecting to the broker whenever it goes away."""
        self._stopping = stop
        pause = 0.5
        with ExitStack() as stack:
            pools = {c: ThreadPoolExecutor(self._budget(c), thread_name_prefix=f"hub-send-{c}") for c in self.connectors}
            for pool in pools.values():
                # deliveries not started by then belong to messages the broker redelivers
                stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            while not stop.is_set():
                try:
                    self._consume(pools, stop, grace_seconds)
                    pause = 0.5
                except Exception as exc:  # broker unreachable or connection lost
                    self.consuming = False
                    log.warning("worker_disconnected", error=type(exc).__name__, detail=str(exc)[:200], retry_in_seconds=pause)
                    self.last_beat = time.monotonic()
                    stop.wait(pause)
                    pause = min(pause * 2, 10.0)

    def _consume(self, pools: dict[str, ThreadPoolExecutor], stop: threading.Event, grace_seconds: float) -> None:
        transport = self.runtime.transport
        with transport.connect() as connection:
            self._unacked = {}
            connection.ensure_connection(max_retries=transport.hosts())
            transport.declare(connection, self.connectors)
            producer = self._producer = Producer(connection.channel())
            consumers = []
            for connector in self.connectors:
                # a dead queue's messages are parked one at a time
                prefetch = {"work": max(self.runtime.settings.worker_prefetch, self._budget(connector)), "dead": 1}
                for queue_, kind in transport.consumed(connector):
                    consumers.append(Consumer(connection.channel(), queues=[queue_], callbacks=[self._on_message(pools[connector], connector, kind)],
                                              accept=["json"], prefetch_count=prefetch[kind]))
            with ExitStack() as stack:
                for consumer in consumers:
                    stack.enter_context(consumer)
                log.info("worker_consuming", connectors=self.connectors, concurrency={c: self._budget(c) for c in self.connectors})
                self.consuming = True
                while not stop.is_set():
                    self.last_beat = time.monotonic()
                    self._settle(producer)
                    try:
                        # only this thread may ack, and it hears of finished deliveries only between
                        # waits: while any are in hand it waits briefly, so acks (and with them the
                        # prefetch window) are not held back by a quiet queue
                        connection.drain_events(timeout=SETTLE_SECONDS if self._in_flight else IDLE_SECONDS)
                    except TimeoutError:
                        pass
            # graceful stop: consumers are cancelled; let in-flight deliveries finish and settle them
            self.consuming = False
            log.info("worker_stopping", in_flight=self._in_flight, grace_seconds=grace_seconds)
            deadline = time.monotonic() + grace_seconds
            while self._in_flight and time.monotonic() < deadline:
                self.last_beat = time.monotonic()
                self._settle(producer, wait=0.1)
            self._settle(producer)
            if self._in_flight:
                # their messages are not acknowledged: closing the connection returns them to the queue
                log.warning("worker_stopped_with_deliveries_in_flight", count=self._in_flight)
            else:
                log.info("worker_stopped_with_nothing_in_flight")

    def _on_message(self, pool: ThreadPoolExecutor, connector: str, kind: QueueKind) -> Callable[[Any, Message], None]:
        def on_message(body: Any, message: Message) -> None:
            ids = delivery_ids(body)
            self._unacked.setdefault(message.channel, set()).add(message.delivery_tag)
            if kind == "dead" and len(ids) > 1:
                self._split(message, connector, ids)
                return
            held = _Held(message, connector, len(ids))
            handle = self.handler.park_dead_letter if kind == "dead" else self.handler.handle
            for delivery_id in ids:
                self._in_flight += 1
                future = pool.submit(handle, delivery_id)
                future.add_done_callback(partial(self._finished, held, delivery_id))

        return on_message

    def _finished(self, held: _Held, delivery_id: int, future: Future[Result]) -> None:
        self._done.put((held, delivery_id, future))  # the consuming thread settles it

    def _split(self, message: Message, connector: str, ids: list[int]) -> None:
        """A dead-lettered message carrying several deliveries: workers kept stopping while one of
        them was in hand, but which one is unknown. Each goes back to the work queue in a message
        of its own, so only the one that keeps stopping workers is parked by the delivery limit."""
        try:
            for delivery_id in ids:
                self._producer.publish({"delivery_id": delivery_id, "connector": connector}, exchange=self.runtime.transport.exchange.name,
                                       routing_key=connector, serializer="json", delivery_mode=2, retry=False)
            self._unacked.get(message.channel, set()).discard(message.delivery_tag)
            message.ack()
        except Exception as exc:  # the channel is gone; the broker redelivers the dead-lettered message
            log.info("ack_lost", error=type(exc).__name__)
            return
        log.warning("dead_letter_split", connector=connector, deliveries=len(ids))

    def _settle(self, producer: Producer, wait: float = 0.0) -> None:
        """Acks messages whose deliveries are all settled (their outcomes are committed), first
        moving a waiting retry into its delay queue; a message with a delivery whose outcome could
        not be stored goes back to the queue (its settled deliveries are skipped when it returns)."""
        finished: list[Message] = []
        requeue: list[_Held] = []
        while True:
            try:
                held, delivery_id, future = self._done.get(timeout=wait) if wait else self._done.get_nowait()
            except queue.Empty:
                break
            wait = 0.0
            self._in_flight -= 1
            held.unsettled -= 1
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or error is not None:
                if error is not None:
                    # the outcome could not be stored (database down): let the broker redeliver
                    log.warning("delivery_requeued", error=f"{type(error).__name__}: {str(error)[:200]}")
                held.failed = True
            elif not held.lost:
                result = future.result()
                if result.delay_seconds is not None:
                    try:
                        self.runtime.transport.delay(producer, held.connector, delivery_id, result.delay_seconds)
                    except Exception as exc:  # the channel it came on is gone; the broker redelivers it
                        log.info("ack_lost", error=type(exc).__name__)
                        held.lost = True
            if held.unsettled:
                continue
            if held.failed and not held.lost:
                requeue.append(held)
            elif not held.lost:
                finished.append(held.message)
        if requeue:
            self._await_database()
            time.sleep(0.5)
        for held in requeue:
            self._unacked.get(held.message.channel, set()).discard(held.message.delivery_tag)
            try:
                held.message.requeue()
            except Exception as exc:  # the channel it came on is gone; the broker redelivers it
                log.info("ack_lost", error=type(exc).__name__)
        self._ack(finished)

    def _await_database(self) -> None:
        """Outcomes could not be stored. While the database is away (a failover takes tens of
        seconds) the messages are held until it answers, then handed back once: every return counts
        toward the queue's delivery limit, and handing them back every half second through an
        outage would have sound deliveries parked as poison. Stopping hands them back at once."""
        pause = 0.5
        while not self._stopping.is_set() and not db.answers(self.runtime.engine):
            self.last_beat = time.monotonic()  # waiting, not stuck (hub.delivery.probes)
            log.warning("worker_waiting_for_database", retry_in_seconds=pause)
            self._stopping.wait(pause)
            pause = min(pause * 2, 10.0)

    def _ack(self, finished: list[Message]) -> None:
        """Acks finished messages, one frame per channel where the broker allows it (the
        transport's `ack` knows), never past a message still in hand there."""
        by_channel: dict[Any, list[Message]] = {}
        for message in finished:
            by_channel.setdefault(message.channel, []).append(message)
        for channel, done in by_channel.items():
            unacked = self._unacked.get(channel, set())
            unacked.difference_update(m.delivery_tag for m in done)
            done.sort(key=lambda m: m.delivery_tag)
            try:
                self.runtime.transport.ack(done, min(unacked, default=None))
            except Exception as exc:  # the channel it came on is gone; the broker redelivers them
                log.info("ack_lost", error=type(exc).__name__)
