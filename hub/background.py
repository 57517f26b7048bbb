"""Periodic work that `hub worker` runs beside delivery: each job is a function called every
so many seconds on its own thread; one failing run is logged and the next run still happens.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from hub.attachments.rescan import rescan
from hub.delivery.alerts import Alerts
from hub.delivery.digest import Digest
from hub.delivery.status_polling import StatusPoller
from hub.delivery.webhook_sender import WebhookSender
from hub.logs import get_logger
from hub.notifications.sender import NotificationSender
from hub.privacy import retention
from hub.runtime import Runtime

log = get_logger("hub.background")


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[], object]


class Periodic:
    """Runs jobs on daemon threads until `stop` is set; the first run happens at once."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._threads: list[threading.Thread] = []

    def start(self, stop: threading.Event) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job, stop), name=f"hub-job-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    @staticmethod
    def _loop(job: Job, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                job.run()
            except Exception:  # a failing run must not end the job: the next one may succeed
                log.exception("background_job_failed", job=job.name)
            stop.wait(job.interval_seconds)


def one_at_a_time(engine: Engine, name: str, run: Callable[[], object]) -> Callable[[], bool]:
    """`run`, but on PostgreSQL only while no other process runs the job of this name (an
    advisory lock): with several workers a back office is polled, and payloads purged, once
    per interval, not once per worker. Returns whether it ran; SQLite has one process anyway."""
    key = int.from_bytes(hashlib.sha256(f"hub-job:{name}".encode()).digest()[:8], "big", signed=True)

    def exclusive() -> bool:
        if engine.dialect.name != "postgresql":
            run()
            return True
        with engine.connect() as conn:
            locked = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
            conn.commit()  # the lock belongs to the session: no transaction is held open meanwhile
            if not locked:
                return False
            try:
                run()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
        return True

    return exclusive


def jobs(runtime: Runtime) -> list[Job]:
    """Every periodic job a worker process runs. Each feature adds its own line here."""
    found: list[Job] = []
    engine = runtime.engine
    purge = one_at_a_time(engine, "retention", lambda: retention.scheduled(runtime))
    found.append(Job("retention", runtime.settings.retention_interval_seconds, purge))
    found.append(Job("status-poll", StatusPoller.tick(runtime), one_at_a_time(engine, "status-poll", StatusPoller(runtime).run)))
    # payment before delivery: ask GOV.UK Pay about payments not finished (docs/payments.md)
    from hub.payments.service import Payments

    found.append(Job("payments", runtime.settings.pay_poll_seconds, one_at_a_time(engine, "payments", Payments.of(runtime).run)))
    # webhook senders need no lock: each claims its events with SKIP LOCKED
    found.append(Job("webhooks", WebhookSender.TICK_SECONDS, WebhookSender(runtime).run))
    # alert summaries and digests need no lock either: each mail is claimed with a guarded UPDATE
    if any(t.alerts is not None for t in runtime.config.tenants.values()):
        found.append(Job("alerts", runtime.settings.alert_flush_seconds, Alerts(runtime).flush))
        found.append(Job("digest", runtime.settings.digest_check_seconds, Digest(runtime).due))
    # residents' messages through GOV.UK Notify (docs/notifications.md): off when no key is set
    notifier = NotificationSender(runtime)
    if notifier.enabled:
        found.append(Job("notifications", NotificationSender.TICK_SECONDS, notifier.run))
    if runtime.settings.clamd_socket:  # files stored while clamd did not answer are scanned again
        found.append(Job("attachment-rescan", runtime.settings.attachment_rescan_seconds,
                         one_at_a_time(engine, "attachment-rescan", lambda: rescan(runtime))))
    return found
