"""The daily digest each tenant with `alerts` gets by e-mail: yesterday's deliveries and failures
per connector, what is parked now and the oldest parked, as Open Forms sends its daily digest.

Sent by `hub worker`'s `digest` job once the UK day has passed HUB_DIGEST_HOUR, or by
`hub digest`; the day is claimed in `alert_state` first, so it goes out once whatever runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from hub.config.files import Tenant
from hub.delivery.alerts import LONDON, Mailer, london
from hub.errors import ConfigError, DeliveryError
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import alerts as store

log = get_logger("hub.delivery.digest")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UK day as UTC instants: midnight to midnight in Europe/London (23 or 25 hours at a change)."""
    start = datetime.combine(day, time(0), LONDON)
    end = datetime.combine(day + timedelta(days=1), time(0), LONDON)
    return start.astimezone(UTC), end.astimezone(UTC)


def yesterday(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(LONDON).date() - timedelta(days=1)


@dataclass(frozen=True)
class Sent:
    tenant: str
    day: date
    outcome: str  # sent | already-sent | failed | printed


def render(tenant: Tenant, figures: store.DigestFigures, day: date, now: datetime) -> tuple[str, str]:
    """The digest's subject and plain-text body."""
    subject = (f"[{tenant.name}] Daily digest for {day:%d/%m/%Y}: {figures.failed} failed attempt(s), "
               f"{figures.parked_now} parked")
    lines = [
        f"Council Connector Hub: {tenant.name}, {day:%A %d %B %Y} (UK time).",
        "",
        f"Submissions received: {figures.received}",
        f"Failed delivery attempts: {figures.failed}",
        f"Deliveries parked now: {figures.parked_now}",
    ]
    oldest = figures.oldest_parked_at
    if oldest is not None:
        days = (now - oldest).days
        lines.append(f"Oldest parked: since {london(oldest)} ({days} day(s) ago)")
    lines += ["", "Per connector (yesterday: delivered, failed attempts, parked; now: parked, oldest parked):"]
    if not figures.connectors:
        lines.append("  nothing was sent or parked")
    for c in figures.connectors:
        since = f", oldest since {london(c.oldest_parked_at)}" if c.oldest_parked_at else ""
        lines.append(f"  {c.connector}: delivered {c.delivered}, failed {c.failed}, parked {c.parked}; "
                     f"parked now {c.parked_now}{since}")
    if figures.parked_now:
        lines += ["", "Replay what was fixed: hub deliveries replay --connector <name> --dry-run, or the console."]
    return subject, "\n".join(lines) + "\n"


class Digest:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.mailer = Mailer(runtime)

    def due(self) -> list[Sent]:
        """The `digest` job: once the UK clock has passed HUB_DIGEST_HOUR, yesterday's digest for every
        tenant that has none yet."""
        now = datetime.now(UTC)
        if now.astimezone(LONDON).hour < self.runtime.settings.digest_hour:
            return []
        return self.send(yesterday(now))

    def send(self, day: date, tenant_ids: list[str] | None = None) -> list[Sent]:
        results = []
        for tenant in self.mailer.tenants():
            if tenant.alerts is None or not tenant.alerts.digest or (tenant_ids and tenant.id not in tenant_ids):
                continue
            results.append(self._one(tenant, day))
        return results

    def _one(self, tenant: Tenant, day: date) -> Sent:
        engine = self.runtime.engine
        before = store.claim_digest(engine, tenant.id, day.isoformat())
        if before is False:
            return Sent(tenant.id, day, "already-sent")
        start, end = day_bounds(day)
        now = datetime.now(UTC)
        subject, body = render(tenant, store.digest_figures(engine, tenant.id, start, end), day, now)
        try:
            self.mailer.send(tenant, subject, body, f"digest/{tenant.id}/{day.isoformat()}")
        except (DeliveryError, ConfigError, OSError) as exc:
            reason = exc.reason if isinstance(exc, DeliveryError) else str(exc) if isinstance(exc, ConfigError) else type(exc).__name__
            store.release_digest(engine, tenant.id, day.isoformat(), before if isinstance(before, str) else None, reason)
            log.warning("digest_mail_failed", tenant=tenant.id, day=day.isoformat(), reason=reason)
            return Sent(tenant.id, day, "failed")
        store.sent(engine, store.Key(tenant.id, store.ALL_CONNECTORS, store.DIGEST), now)
        log.info("digest_mail_sent", tenant=tenant.id, day=day.isoformat())
        return Sent(tenant.id, day, "sent")

    def preview(self, day: date, tenant_ids: list[str] | None = None) -> list[tuple[str, str, str]]:
        """(tenant, subject, body) of each digest without sending or claiming it (`hub digest --print`)."""
        start, end = day_bounds(day)
        now = datetime.now(UTC)
        found = []
        for tenant in self.runtime.config.tenants.values():
            if tenant_ids and tenant.id not in tenant_ids:
                continue
            if not tenant_ids and (tenant.alerts is None or not tenant.alerts.digest):
                continue
            subject, body = render(tenant, store.digest_figures(self.runtime.engine, tenant.id, start, end), day, now)
            found.append((tenant.id, subject, body))
        return found
