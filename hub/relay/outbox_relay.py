"""The outbox relay: publishes committed outbox rows to the broker (RabbitMQ: with publisher confirms).

It runs beside intake, woken right after each commit and sweeping every second for rows left
behind (broker down at the time, retries whose wait is over), so intake never waits on the broker.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from hub import metrics
from hub.logs import get_logger
from hub.relay.transport import Publisher
from hub.runtime import Runtime
from hub.store import outbox

log = get_logger("hub.relay.outbox_relay")

# the least time between two passes of the relay
COALESCE_SECONDS = 0.01


def messages(rows: list[outbox.OutboxRow], per_message: int) -> list[tuple[str, bytes]]:
    """(routing key, body) of the messages carrying these rows: each connector's deliveries in
    claim order, up to `per_message` to a message, as `{"delivery_ids": [...], "connector": ...}`."""
    by_connector: dict[str, list[int]] = {}
    for row in rows:
        by_connector.setdefault(row.connector, []).append(row.delivery_id)
    return [
        (connector, orjson.dumps({"delivery_ids": ids[start:start + per_message], "connector": connector}))
        for connector, ids in by_connector.items()
        for start in range(0, len(ids), per_message)
    ]


class Relay:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: Publisher | None = None
        self._connectors = set(runtime.connector_names())

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hub-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the batch in hand is published and its rows removed."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._disconnect()

    def _loop(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                self.run_once()
                pause = 0.5
            except Exception as exc:  # broker or database down: keep the rows, try again later
                metrics.RELAY_ERRORS.inc()
                log.warning("relay_paused", error=type(exc).__name__, detail=str(exc)[:200], retry_in_seconds=pause)
                self._disconnect()
                self._stop.wait(pause)
                pause = min(pause * 2, 10.0)
                continue
            # commits that land meanwhile share the next claim and its publisher confirms, instead
            # of a transaction and a broker round trip each (a short wait before delivery, none for intake)
            self._stop.wait(COALESCE_SECONDS)
            self._wake.wait(self.runtime.settings.relay_sweep_seconds)
            self._wake.clear()

    def run_once(self) -> int:
        """Publishes every row that is due now; returns how many."""
        total = 0
        while True:
            published = self._publish_batch()
            total += published
            if published < self.runtime.settings.relay_batch:
                return total

    def _publish_batch(self) -> int:
        with self.runtime.engine.begin() as conn:
            rows = outbox.claim_due(conn, self.runtime.settings.relay_batch, sorted(self._connectors))
            if not rows:
                return 0
            publisher = self._ensure_publisher()
            publisher.publish_many(messages(rows, self.runtime.settings.relay_deliveries_per_message),
                                   self.runtime.transport.exchange.name)
            for row in rows:
                metrics.PUBLISHED.labels(row.connector).inc()
            # rows go only after every publish above was confirmed; a crash before this line
            # republishes them, which the worker and the back office's idempotency key absorb
            outbox.remove(conn, [r.id for r in rows])
        log.debug("relay_published", count=len(rows))
        return len(rows)

    def _ensure_publisher(self) -> Publisher:
        if self._publisher is None:
            publisher = self.runtime.transport.publisher()
            try:
                publisher.connect(self._connectors)
            except Exception:
                publisher.close()
                raise
            self._publisher = publisher
        return self._publisher

    def _disconnect(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    def health(self) -> dict[str, Any]:
        return {"running": bool(self._thread and self._thread.is_alive()), "connected": self._publisher is not None}
