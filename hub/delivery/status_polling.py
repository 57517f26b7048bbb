"""Asks back offices that cannot push (Open311, Bartec) what became of the records the hub
delivered, every connector's `status_updates.poll_seconds`, and records each change once.

Only delivered records with a back-office reference, received in the last 30 days and not yet
in a final status are asked about, a bounded batch per run; successive runs walk through them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hub.errors import ConfigError, DeliveryError
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import status_events as store

log = get_logger("hub.delivery.status_polling")
WINDOW = timedelta(days=30)
BATCH = 200


def polled_connectors(runtime: Runtime) -> dict[str, float]:
    """Each connector the hub polls, and how often (seconds)."""
    return {
        name: config.status_updates.poll_seconds
        for name, config in runtime.config.connectors.items()
        if config.status_updates is not None and config.status_updates.poll_seconds is not None
    }


class StatusPoller:
    """`run` is called every `tick(runtime)` seconds and polls each connector that is due."""

    def __init__(
        self, runtime: Runtime, window: timedelta = WINDOW, batch: int = BATCH, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.runtime, self.window, self.batch, self.clock = runtime, window, batch, clock
        self.every = polled_connectors(runtime)
        self._due = {name: 0.0 for name in self.every}
        # the last delivery id asked about, so the next run carries on from there
        self._cursor = {name: 0 for name in self.every}
        self._unsupported: set[str] = set()

    @staticmethod
    def tick(runtime: Runtime) -> float:
        """How often the job wakes: often enough for the most frequent connector, and at least
        every `poll_interval_seconds`."""
        return min([*polled_connectors(runtime).values(), runtime.settings.poll_interval_seconds])

    def run(self) -> dict[str, int]:
        """Polls the connectors that are due; returns how many new statuses each one gave."""
        found: dict[str, int] = {}
        for name, every in self.every.items():
            if self.clock() >= self._due[name]:
                self._due[name] = self.clock() + every
                found[name] = self.poll(name)
        return found

    def poll(self, name: str) -> int:
        connector = self.runtime.connector(name)
        if not connector.can_poll_status:
            if name not in self._unsupported:
                self._unsupported.add(name)
                log.error("status_poll_unsupported", connector=name, hint="remove status_updates.poll_seconds or use a connector that can poll")
            return 0
        since = datetime.now(UTC) - self.window
        batch = store.pollable(self.runtime.engine, name, since, self._cursor[name], self.batch)
        self._cursor[name] = batch[-1].target.delivery_id if len(batch) == self.batch else 0
        by_reference: dict[str, list[store.Pollable]] = {}
        for item in batch:
            if item.target.external_reference is not None:
                by_reference.setdefault(item.target.external_reference, []).append(item)
        if not by_reference:
            return 0
        try:
            reports = connector.poll_status(list(by_reference))
        except (DeliveryError, ConfigError) as exc:
            log.warning("status_poll_failed", connector=name, reason=getattr(exc, "reason", str(exc)), records=len(by_reference))
            return 0
        recorded = 0
        now = datetime.now(UTC)
        for report in reports:
            status, message = report.status[:64], report.message[:2000] if report.message else None
            for item in by_reference.get(report.external_reference, []):
                latest = item.latest
                if latest is not None and (latest.status, latest.message) == (status, message):
                    continue  # nothing new since the last run
                # two workers seeing the same change after the same event make the same key
                key = store.dedupe_key("poll", name, item.target.delivery_id, status, message, report.occurred_at, latest.id if latest else None)
                stored = store.record(self.runtime.engine, item.target, status, message, report.occurred_at or now, "poll", key)
                recorded += stored.created
        log.info("status_poll_done", connector=name, asked=len(by_reference), reported=len(reports), recorded=recorded)
        return recorded
