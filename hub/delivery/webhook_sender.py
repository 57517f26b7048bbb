"""Status events for front-end clients' webhooks: queued when a delivery is delivered or parked,
then sent signed as Standard Webhooks says and retried with exponential backoff.

Each request carries `webhook-id` (the message id, the same on every retry), `webhook-timestamp`
and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` once per valid
secret (two while a rotated-out secret lasts). Redirects are never followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection

from hub.config.files import RetryPolicy
from hub.delivery.retry import backoff_seconds
from hub.errors import OutboundRefused
from hub.logs import get_logger
from hub.outbound import client as outbound_client
from hub.outbound.guard import AllowList, check_url
from hub.runtime import Runtime
from hub.store import deliveries
from hub.store import webhooks as store

log = get_logger("hub.delivery.webhook_sender")
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, the form Standard Webhooks libraries read."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(message_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
        "user-agent": "council-connector-hub-webhooks",
    }


class OutcomeEvents:
    """Queues `delivery.delivered` and `delivery.parked` for clients that have a webhook. The
    worker's hot path looks only in a set of such clients, read again every few seconds, so a
    delivery for a client without webhooks costs no query at all."""

    def __init__(self, runtime: Runtime, refresh_seconds: float = 5.0) -> None:
        self.engine = runtime.engine
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._clients: frozenset[str] = frozenset()
        self._read_at = -math.inf

    def _interested(self, client_id: str) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_seconds:
                self._clients = store.clients_with_webhooks(self.engine)
                self._read_at = time.monotonic()
            return client_id in self._clients

    def notice(self, client_id: str, delivery_id: int, reference: str, connector: str, state: str,
               external_reference: str | None = None) -> deliveries.Notice | None:
        """What queues the `delivery.<state>` event inside the transaction that records the
        outcome (so a crash between the two can neither lose nor invent an event); None for a
        client without webhooks."""
        if not self._interested(client_id):
            return None
        event_type = f"delivery.{state}"

        def queue(conn: Connection, attempt: int) -> None:
            now = datetime.now(UTC)
            data = {"reference": reference, "connector": connector, "state": state, "attempts": attempt,
                    "external_reference": external_reference, "at": now.isoformat()}
            body = {"type": event_type, "timestamp": now.isoformat(), "data": data}
            store.enqueue(conn, client_id, event_type, f"msg_{state}_{delivery_id}_{attempt}", body, now)

        return queue


class WebhookSender:
    """One pass sends every due event (`run`, called by the background job every second)."""

    TICK_SECONDS = 1.0

    def __init__(
        self,
        runtime: Runtime,
        policy: RetryPolicy | None = None,
        batch: int = 20,
        concurrency: int = 4,
    ) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.timeout = settings.webhook_timeout_seconds
        self.policy = policy or RetryPolicy(max_attempts=settings.webhook_max_attempts, base_seconds=30.0, cap_seconds=6 * 3600.0)
        self.batch, self.concurrency = batch, concurrency
        # long enough for a whole batch to time out; after it another sender may try the event
        self.lease = timedelta(seconds=self.timeout * math.ceil(batch / concurrency) + 30)
        # one client per tenant: its transport checks that tenant's allow-list and connects only to
        # the addresses it has just checked, so a DNS answer that changes cannot reach a metadata service
        self._clients: dict[str, httpx.Client] = {}
        self._clients_lock = threading.Lock()

    def run(self) -> int:
        """Sends the events due now; returns how many were delivered."""
        claimed = store.claim(self.runtime.engine, self.runtime.sealer, self.batch, self.lease, datetime.now(UTC))
        if not claimed:
            return 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="hub-webhook") as pool:
            return sum(pool.map(self._send, claimed))

    def _allow_list(self, tenant: str) -> AllowList:
        found = self.runtime.config.tenants.get(tenant)
        return AllowList(found.allowed_hosts if found is not None else (), owner=f"tenant {tenant}")

    def _client(self, tenant: str) -> httpx.Client:
        with self._clients_lock:
            if tenant not in self._clients:
                self._clients[tenant] = outbound_client.client(self.timeout, min(5.0, self.timeout), self._allow_list(tenant))
            return self._clients[tenant]

    def _send(self, event: store.Claimed) -> bool:
        url = event.webhook.url
        try:
            check_url(url, self._allow_list(event.tenant))  # again: the list or the DNS may have changed
        except OutboundRefused as exc:
            return self._settle(event, None, f"refused: {exc.reason}", final=True)
        body = orjson.dumps(event.body)
        now = datetime.now(UTC)
        signing = [s.value for s in event.webhook.valid_secrets(now)]
        headers = signed_headers(event.message_id, int(now.timestamp()), body, signing)
        try:
            # the reply's body is never read: a receiver cannot make the hub download anything
            with self._client(event.tenant).stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
        except OutboundRefused as exc:
            return self._settle(event, None, f"refused: {exc.reason}", final=True)
        except httpx.TimeoutException:
            return self._settle(event, None, f"no reply within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return self._settle(event, None, f"could not connect: {type(exc).__name__}")
        if 200 <= status < 300:
            return self._settle(event, status, None)
        moved = " (redirects are not followed)" if 300 <= status < 400 else ""
        return self._settle(event, status, f"HTTP {status}{moved}")

    def _settle(self, event: store.Claimed, status: int | None, error: str | None, final: bool = False) -> bool:
        now = datetime.now(UTC)
        fields: dict[str, Any] = {"message_id": event.message_id, "webhook_id": event.webhook.id, "attempt": event.attempts}
        if error is None:
            store.settle(self.runtime.engine, event, "delivered", None, now, now)
            log.info("webhook_delivered", status=status, **fields)
            return True
        if final or event.attempts >= self.policy.max_attempts:
            store.settle(self.runtime.engine, event, "failed", error, now, now)
            log.warning("webhook_failed", error=error, **fields)
            return False
        wait = backoff_seconds(self.policy, event.attempts)
        store.settle(self.runtime.engine, event, "retrying", error, now + timedelta(seconds=wait), now)
        log.info("webhook_retry_scheduled", error=error, retry_in_seconds=round(wait, 3), **fields)
        return False

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
