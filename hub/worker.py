"""The worker: consumes each connector's queue, maps the payload, calls the connector and
records the outcome before it acknowledges the message.

A pool of threads sends records; the consuming thread alone talks to the broker, because a
kombu connection is not thread-safe. Acks wait until the outcome is committed, so a crash at
any point means redelivery, which the delivery's state and the idempotency key absorb.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from kombu.messaging import Consumer
from kombu.message import Message

from connectors.base import DeliveryContext
from hub import metrics
from hub.errors import ConfigError, DeliveryError, MappingError, PermanentError, TransientError
from hub.logs import get_logger, personal_data
from hub.retry import decide
from hub.runtime import Runtime
from hub.store import deliveries

log = get_logger("hub.worker")


def idempotency_key(reference: str, connector: str) -> str:
    return f"{reference}/{connector}"


class Worker:
    def __init__(self, runtime: Runtime, connectors: list[str] | None = None, concurrency: int = 4) -> None:
        self.runtime = runtime
        self.connectors = connectors or runtime.connector_names()
        unknown = sorted(set(self.connectors) - set(runtime.connector_names()))
        if unknown:
            raise ValueError(f"unknown connector(s) {', '.join(unknown)}; configured: {', '.join(runtime.connector_names())}")
        self.concurrency = concurrency
        self._done: queue.Queue[tuple[Message, str | None]] = queue.Queue()
        self._in_flight = 0

    # -- one delivery ---------------------------------------------------------------------

    def handle(self, delivery_id: int) -> str:
        """Processes one delivery and records its outcome; returns what happened."""
        job = deliveries.load(self.runtime.engine, delivery_id)
        if job is None:
            log.warning("delivery_unknown", delivery_id=delivery_id)
            return "unknown"
        if not job.is_open:
            # a redelivered message for a delivery that is already finished
            return f"already-{job.state}"
        form = self.runtime.forms.get(job.form_id, job.form_version)
        pii = form.pii_values(job.payload) if form is not None else []
        with personal_data(pii), structlog.contextvars.bound_contextvars(
            reference=job.reference, delivery_id=job.delivery_id, connector=job.connector
        ):
            return self._attempt(job)

    def _attempt(self, job: deliveries.DeliveryJob) -> str:
        started = datetime.now(UTC)
        attempt = job.attempts + 1
        key = idempotency_key(job.reference, job.connector)
        meta = {
            "reference": job.reference,
            "form_id": job.form_id,
            "form_version": job.form_version,
            "received_at": job.received_at.isoformat(),
            "tenant": job.tenant,
            "connector": job.connector,
            "idempotency_key": key,
        }
        context = DeliveryContext(job.reference, job.connector, job.delivery_id, key, attempt, job.tenant, job.form_id)
        engine = self.runtime.engine
        clock = time.perf_counter()
        try:
            mapping = self.runtime.mappings.get((job.form_id, job.connector))
            if mapping is None:
                raise MappingError(f"no mapping from form {job.form_id!r} to connector {job.connector!r}")
            record = mapping.apply(job.payload, meta)
            outcome = self.runtime.connector(job.connector).send(record, context)
        except DeliveryError as error:
            return self._failed(job, attempt, started, error)
        except ConfigError as error:  # e.g. a credential's environment variable is not set
            return self._failed(job, attempt, started, PermanentError(f"configuration: {error}"))
        except Exception as exc:  # a fault in connector code: retried like a transient error, never looped
            log.exception("connector_raised", attempt=attempt)
            return self._failed(job, attempt, started, TransientError(f"unexpected {type(exc).__name__} in connector"))
        finally:
            metrics.DELIVERY_SECONDS.labels(job.connector).observe(time.perf_counter() - clock)
        deliveries.record_delivered(engine, job.delivery_id, started, outcome.external_reference)
        metrics.DELIVERIES.labels(job.connector, "delivered").inc()
        log.info("delivered", attempt=attempt, external_reference=outcome.external_reference)
        return "delivered"

    def _failed(self, job: deliveries.DeliveryJob, attempt: int, started: datetime, error: DeliveryError) -> str:
        policy = self.runtime.config.connectors[job.connector].retry
        decision = decide(error, policy, attempt)
        if decision.park:
            kind = "transient" if isinstance(error, TransientError) else "permanent"
            deliveries.record_parked(self.runtime.engine, job.delivery_id, started, error.reason, kind)
            metrics.DELIVERIES.labels(job.connector, "parked").inc()
            log.warning("delivery_parked", attempt=attempt, reason=error.reason, error_class=type(error).__name__)
            return "parked"
        retry_at = datetime.now(UTC) + timedelta(seconds=decision.delay_seconds)
        deliveries.record_retry(self.runtime.engine, job.delivery_id, started, error.reason, retry_at)
        metrics.DELIVERIES.labels(job.connector, "retry").inc()
        log.info("delivery_retry_scheduled", attempt=attempt, reason=error.reason, retry_in_seconds=round(decision.delay_seconds, 3))
        return "retrying"

    # -- consuming ------------------------------------------------------------------------

    def run(self, stop: threading.Event, grace_seconds: float = 30.0) -> None:
        """Consumes until `stop` is set, reconnecting to the broker whenever it goes away."""
        pause = 0.5
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="hub-send") as pool:
            while not stop.is_set():
                try:
                    self._consume(pool, stop, grace_seconds)
                    pause = 0.5
                except Exception as exc:  # broker unreachable or connection lost
                    log.warning("worker_disconnected", error=type(exc).__name__, detail=str(exc)[:200], retry_in_seconds=pause)
                    stop.wait(pause)
                    pause = min(pause * 2, 10.0)

    def _consume(self, pool: ThreadPoolExecutor, stop: threading.Event, grace_seconds: float) -> None:
        topology = self.runtime.topology
        with topology.connect() as connection:
            connection.ensure_connection(max_retries=1)
            topology.declare(connection, self.connectors)
            channel = connection.channel()
            prefetch = self.runtime.settings.worker_prefetch

            def on_message(body: Any, message: Message) -> None:
                self._in_flight += 1
                future = pool.submit(self.handle, int(body["delivery_id"]))
                future.add_done_callback(lambda f: self._done.put((message, _failure(f))))

            consumer = Consumer(
                channel,
                queues=[topology.queue(c) for c in self.connectors],
                callbacks=[on_message],
                accept=["json"],
                prefetch_count=prefetch,
            )
            with consumer:
                log.info("worker_consuming", connectors=self.connectors, prefetch=prefetch, concurrency=self.concurrency)
                while not stop.is_set():
                    self._settle()
                    try:
                        connection.drain_events(timeout=0.05)
                    except socket.timeout:
                        pass
            # graceful stop: no new messages; let in-flight deliveries finish and ack them
            deadline = time.monotonic() + grace_seconds
            while self._in_flight and time.monotonic() < deadline:
                self._settle(wait=0.1)
            self._settle()

    def _settle(self, wait: float = 0.0) -> None:
        """Acks finished messages (their outcome is committed) or returns failed ones to the queue."""
        while True:
            try:
                message, failure = self._done.get(timeout=wait) if wait else self._done.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            self._in_flight -= 1
            try:
                if failure is None:
                    message.ack()
                else:
                    # the outcome could not be stored (database down): let the broker redeliver
                    log.warning("delivery_requeued", error=failure)
                    time.sleep(0.5)
                    message.requeue()
            except Exception as exc:  # the channel it came on is gone; the broker redelivers it
                log.info("ack_lost", error=type(exc).__name__)


def _failure(future: Future[str]) -> str | None:
    exc = future.exception()
    return None if exc is None else f"{type(exc).__name__}: {str(exc)[:200]}"
