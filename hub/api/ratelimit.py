"""Rate limits, daily quotas and the brake on failed sign-ins, checked where a request's
identity is settled (hub.api.deps, hub.api.fast_intake): over a limit is a 429 problem.

Counters live in this process (the `limits` library's memory storage): each `hub api` replica
counts on its own, so with N replicas a client may make up to N times its limit (docs/deploy.md).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

import limits
import structlog
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from hub.config.files import Client, HubConfig
from hub.config.settings import Settings
from hub.errors import TooManyRequests

log = structlog.get_logger(__name__)


def _headers(item: limits.RateLimitItem, remaining: int, reset_at: float, now: float) -> dict[str, str]:
    """Retry-After and the IETF draft RateLimit header fields (seconds until the window resets)."""
    wait = max(1, math.ceil(reset_at - now))
    return {
        "Retry-After": str(wait),
        "RateLimit-Limit": str(item.amount),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(wait),
    }


class RateLimits:
    """One per app: the buckets of every client key and tenant, the tenants' daily quotas and
    the failed-authentication count of every source address (tests move the clock with time-machine:
    the storage reads time.time)."""

    def __init__(self, settings: Settings, config: HubConfig) -> None:
        self.config = config
        self.clock = time.time
        self.storage = MemoryStorage()
        self.limiter = FixedWindowRateLimiter(self.storage)
        self._client_default = limits.parse_many(settings.client_rate_limit)
        self._tenant_default = limits.parse_many(settings.tenant_rate_limit)
        self._failure_limit = limits.parse(settings.auth_failure_limit)
        self._max_wait = settings.auth_failure_max_wait
        self._parsed: dict[str, list[limits.RateLimitItem]] = {}
        # address -> (tries refused so far, refused until): the growing wait after too many failures
        self._blocked: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, limits.RateLimitItem], tuple[str, int]] = {}
        self._quotas: dict[str, list[limits.RateLimitItem]] = {
            tenant.id: [limits.RateLimitItemPerDay(tenant.daily_quota)]
            for tenant in config.tenants.values() if tenant.daily_quota is not None
        }

    def _items(self, text: str | None, default: list[limits.RateLimitItem]) -> list[limits.RateLimitItem]:
        if text is None:
            return default
        found = self._parsed.get(text)
        if found is None:
            found = self._parsed[text] = limits.parse_many(text)
        return found

    def _spend(self, items: list[limits.RateLimitItem], key: str, what: str) -> None:
        for item in items:
            # the limiter's hit, with the storage key and expiry worked out once (a third of its cost)
            found = self._keys.get((key, item))
            if found is None:
                found = self._keys[(key, item)] = (item.key_for(key), item.get_expiry())
            if self.storage.incr(*found) > item.amount:
                reset_at, remaining = self.limiter.get_window_stats(item, key)
                headers = _headers(item, remaining, reset_at, self.clock())
                raise TooManyRequests(
                    f"{what} may make {item.amount} requests per {item.multiples} {item.GRANULARITY.name}; "
                    f"wait {headers['Retry-After']} s.",
                    headers=headers,
                    limit=str(item),
                )

    def check_client(self, client: Client) -> None:
        """Spends one token of the client's bucket, of its tenant's bucket and of the tenant's
        day; a 429 when one of them is empty (what was spent before it stays spent)."""
        self._spend(self._items(client.rate_limit, self._client_default), f"client/{client.id}", "This client")
        tenant = self.config.tenants.get(client.tenant)
        self._spend(self._items(tenant.rate_limit if tenant else None, self._tenant_default),
                    f"tenant/{client.tenant}", "This council's clients together")
        quota = self._quotas.get(client.tenant)
        if quota is not None:
            self._spend(quota, f"quota/{client.tenant}", "This council's daily quota: its clients")

    def check_staff(self, staff_id: str) -> None:
        """A member of staff (or a script with a staff token) gets a client's default bucket."""
        self._spend(self._client_default, f"staff/{staff_id}", "This staff token")

    def quotas(self) -> list[dict[str, Any]]:
        """Each tenant's daily quota as this replica has counted it today (UTC)."""
        shown = []
        for tenant in sorted(self.config.tenants.values(), key=lambda t: t.id):
            entry: dict[str, Any] = {"tenant": tenant.id, "daily_quota": tenant.daily_quota}
            if tenant.daily_quota is not None:
                item = limits.RateLimitItemPerDay(tenant.daily_quota)
                reset_at, remaining = self.limiter.get_window_stats(item, f"quota/{tenant.id}")
                entry.update(used=tenant.daily_quota - remaining, remaining=remaining,
                             resets_at=datetime.fromtimestamp(reset_at, UTC).isoformat())
            shown.append(entry)
        return shown

    def check_source(self, address: str) -> None:
        """A 429 while this address is refused for failed sign-ins; each try meanwhile doubles
        the wait (up to the cap), so a guessing script gets slower and slower."""
        with self._lock:
            refused = self._blocked.get(address)
            if refused is None:
                return
            tries, until = refused
            now = self.clock()
            if now >= until:
                del self._blocked[address]
                return
            wait = min(self._max_wait, (until - now) * 2)
            self._blocked[address] = (tries + 1, now + wait)
        log.warning("auth.refused", source=address, tries=tries + 1, wait_s=round(wait))
        raise self._refusal(math.ceil(wait))

    def failed(self, address: str) -> None:
        """Counts a failed key or token from this address (the key itself is never logged)."""
        log.info("auth.failed", source=address)
        if self.limiter.hit(self._failure_limit, f"auth/{address}"):
            return
        reset_at, _ = self.limiter.get_window_stats(self._failure_limit, f"auth/{address}")
        now = self.clock()
        with self._lock:
            self._blocked[address] = (0, max(reset_at, now + 1))
        log.warning("auth.blocked", source=address, limit=str(self._failure_limit))
        raise self._refusal(max(1, math.ceil(reset_at - now)))

    def _refusal(self, wait: int) -> TooManyRequests:
        item = self._failure_limit
        return TooManyRequests(
            f"Too many failed API keys or tokens from this address (more than {item.amount} per "
            f"{item.multiples} {item.GRANULARITY.name}); wait {wait} s.",
            headers={"Retry-After": str(wait), "RateLimit-Limit": str(item.amount),
                     "RateLimit-Remaining": "0", "RateLimit-Reset": str(wait)},
        )
