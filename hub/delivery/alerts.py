"""E-mail alerts to a tenant's ICT staff when deliveries park or a connector's circuit opens,
grouped so one outage sends one mail and one summary, not one per delivery (docs/alerts.md).

    parked / circuit opened (a sending thread) -> Alerts.parked / Alerts.circuit_opened: queued, O(1)
    the alert thread: count the events in (hub/store/alerts.py `add`) -> claim -> mail at once
    `hub worker`'s alerts job (Alerts.flush): windows that are over -> one summary each

Per tenant, connector and kind, the first event is mailed at once; later ones wait until the
window (HUB_ALERT_WINDOW_SECONDS) is over and go out as one summary. The claim is one guarded
UPDATE, so of several workers exactly one sends. A mail that fails is logged and tried again
at the next flush; it never holds up or fails a delivery.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from connectors.email import EmailConnector
from hub import metrics
from hub.config.files import Tenant
from hub.errors import ConfigError, DeliveryError
from hub.logs import get_logger, scrubbed
from hub.runtime import Runtime
from hub.store import alerts as store

log = get_logger("hub.delivery.alerts")
LONDON = ZoneInfo("Europe/London")
PARKED, CIRCUIT = "parked", "circuit"
# events waiting for the alert thread; past it they are dropped (counted, and the digest still shows them)
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Event:
    tenant: str
    connector: str
    kind: str
    at: datetime
    reason: str | None


def london(moment: datetime) -> str:
    return moment.astimezone(LONDON).strftime("%d/%m/%Y %H:%M")


class Mailer:
    """A tenant's alert mail, through the e-mail connector its `alerts.mail_connector` names."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tenants(self) -> list[Tenant]:
        return [t for t in self.runtime.config.tenants.values() if t.alerts is not None]

    def send(self, tenant: Tenant, subject: str, body: str, key: str) -> None:
        """Sends one message; `key` makes its Message-ID, so a resend is recognisably the same.
        Raises DeliveryError or ConfigError (the mail server's password is not set)."""
        assert tenant.alerts is not None
        connector = self.runtime.connector(tenant.alerts.mail_connector)
        if not isinstance(connector, EmailConnector):
            raise ConfigError(f"alerts.mail_connector {tenant.alerts.mail_connector!r} is not an e-mail connector")
        message = EmailMessage(policy=SMTP_POLICY)
        message["From"] = connector.options.from_address
        message["To"] = ", ".join(tenant.alerts.to)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = connector.message_id(key)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Hub-Tenant"] = tenant.id
        message.set_content(body)
        connector.deliver(message, tenant.alerts.to)


class Alerts:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.mailer = Mailer(runtime)
        self._queue: queue.Queue[Event] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._alerted = {t.id for t in self.mailer.tenants()}

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.runtime.settings.alert_window_seconds)

    # -- the hooks: called on a sending thread, so they only queue ---------------------------------

    def parked(self, tenant: str, connector: str, reason: str) -> None:
        if tenant in self._alerted:
            # scrubbed here, on the sending thread, where the submission's personal data is known
            self._offer(Event(tenant, connector, PARKED, datetime.now(UTC), scrubbed(reason)[:300]))

    def circuit_opened(self, connector: str, failures: int, open_seconds: float) -> None:
        config = self.runtime.config.connectors.get(connector)
        serves = config.tenants if config is not None else ()
        reason = f"{failures} failures in a row; deliveries wait {open_seconds:g} s, then one probe decides"
        for tenant in sorted(self._alerted):
            if "*" in serves or tenant in serves:
                self._offer(Event(tenant, connector, CIRCUIT, datetime.now(UTC), reason))

    def _offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
            self._start()
        except queue.Full:
            metrics.ALERTS.labels(event.kind, "dropped").inc()
        except Exception:  # an alert must never fail a delivery
            log.exception("alert_not_queued", tenant=event.tenant, connector=event.connector, kind=event.kind)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hub-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.record(batch)
            except Exception:  # database down: these events are lost to the alerts, not to the digest
                log.exception("alerts_not_recorded", events=len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def wait(self, timeout: float = 10.0) -> None:
        """Until every queued event is recorded and its mail sent (for tests and shutdown)."""
        done = threading.Event()

        def drained() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=drained, daemon=True).start()
        done.wait(timeout)

    # -- counting and sending ----------------------------------------------------------------------

    def record(self, events: Sequence[Event]) -> None:
        """Counts events in, grouped by key, then mails at once each key whose window is closed."""
        grouped: dict[store.Key, list[Event]] = {}
        for event in events:
            grouped.setdefault(store.Key(event.tenant, event.connector, event.kind), []).append(event)
        store.add(self.runtime.engine, [
            store.Pending(key, len(group), min(e.at for e in group), max(e.at for e in group), group[-1].reason)
            for key, group in grouped.items()
        ])
        for key in grouped:
            self._send(key, summary=False)

    def flush(self, now: datetime | None = None) -> int:
        """Sends one summary for each key whose window is over with events waiting (the worker's
        `alerts` job, every HUB_ALERT_FLUSH_SECONDS); returns how many mails went out. `now`: the
        moment to judge the windows by (a test's "a quarter of an hour later")."""
        now = now or datetime.now(UTC)
        return sum(self._send(key, summary=True, now=now) for key in store.due(self.runtime.engine, now))

    def _send(self, key: store.Key, summary: bool, now: datetime | None = None) -> bool:
        tenant = self.runtime.config.tenants.get(key.tenant)
        if tenant is None or tenant.alerts is None:
            return False
        engine = self.runtime.engine
        now = now or datetime.now(UTC)
        taken = store.claim(engine, key, now, self.window)
        if taken is None:
            return False
        subject, body = message(tenant, taken, summary, self.window)
        try:
            self.mailer.send(tenant, subject, body, f"alert/{key.tenant}/{key.connector}/{key.kind}/{now.isoformat()}")
        except (DeliveryError, ConfigError, OSError) as exc:
            reason = exc.reason if isinstance(exc, DeliveryError) else str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
            store.release(engine, taken, reason)
            metrics.ALERTS.labels(key.kind, "failed").inc()
            log.warning("alert_mail_failed", tenant=key.tenant, connector=key.connector, kind=key.kind, events=taken.count, reason=reason)
            return False
        store.sent(engine, key, now)
        metrics.ALERTS.labels(key.kind, "sent").inc()
        log.info("alert_mail_sent", tenant=key.tenant, connector=key.connector, kind=key.kind, events=taken.count, summary=summary)
        return True


def message(tenant: Tenant, taken: store.Claim, summary: bool, window: timedelta) -> tuple[str, str]:
    """The subject and plain-text body of one alert mail."""
    connector, n = taken.key.connector, taken.count
    minutes = max(1, round(window.total_seconds() / 60))
    if taken.key.kind == CIRCUIT:
        what = "circuit opened" if n == 1 else f"circuit opened {n} times"
        subject = f"[{tenant.name}] {connector}: {what}"
        lines = [
            f"The circuit breaker of connector {connector} opened at {london(taken.last_at)} (UK time):",
            "it has failed repeatedly. Its deliveries wait and are tried again; none is lost.",
            f"Detail: {taken.reason}" if taken.reason else "(no detail)",
        ]
    else:
        deliveries = "1 delivery" if n == 1 else f"{n} deliveries"
        subject = (f"[{tenant.name}] {connector}: {deliveries} parked in the last {minutes} min" if summary
                   else f"[{tenant.name}] {connector}: {deliveries} parked")
        when = (f"between {london(taken.first_at)} and {london(taken.last_at)}" if n > 1 else f"at {london(taken.last_at)}")
        lines = [
            f"{deliveries} to connector {connector} parked {when} (UK time).",
            "A parked delivery is not sent again until someone replays it.",
            f"Last reason: {taken.reason}" if taken.reason else "(no reason recorded)",
        ]
    lines += ["", f"Further alerts about {connector} are collected for {minutes} minutes and sent as one summary."]
    if taken.key.kind == CIRCUIT:
        lines.append("Check it: hub connectors check   (or the console's connectors page); GET /v1/admin/connectors")
    else:
        lines += [
            f"See them: hub deliveries list --connector {connector}   (or the console's parked deliveries page)",
            f"Replay them: hub deliveries replay --connector {connector} --dry-run",
        ]
    return subject, "\n".join(lines) + "\n"
