"""Sends residents' messages through GOV.UK Notify with the official `notifications-python-client`:
a background job in `hub worker` that queues what is due (hub/store/notifications.py), then for
each message opens the submission's answers, picks e-mail or text message, fills the template's
personalisation and sends it.

Never on the request path and never in a delivery: a Notify outage only delays messages. 5xx,
429 and connection failures retry on the hub's retry schedule (`hub/delivery/retry.py`
`backoff_seconds`); other 4xx (a wrong template id, a bad address) fail at once with Notify's
reason. The resident's address, number and answers are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from notifications_python_client.errors import HTTPError
from notifications_python_client.notifications import NotificationsAPIClient

from hub.config.files import RetryPolicy
from hub.delivery.retry import backoff_seconds
from hub.errors import ConfigError
from hub.logs import get_logger
from hub.notifications.config import FormNotifications, Message, NotificationConfig, load_notification_config
from hub.runtime import Runtime
from hub.store import notifications as store

log = get_logger("hub.notifications")
MAX_ATTEMPTS, CAP_SECONDS = 10, 3600.0


def pointer_value(document: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901), or None where there is none."""
    node = document
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


class Unsendable(Exception):
    """This message can never be sent (no address, payload gone); the reason is safe to show."""


class NotificationSender:
    """One pass (`run`, every `TICK_SECONDS`) queues what is due and sends it."""

    TICK_SECONDS = 1.0

    def __init__(self, runtime: Runtime, config: NotificationConfig | None = None, policy: RetryPolicy | None = None,
                 batch: int = 20, timeout: float = 10.0) -> None:
        self.runtime = runtime
        self.config = config if config is not None else load_notification_config(
            runtime.settings.config_dir, set(runtime.config.tenants), set(runtime.forms.ids()))
        self.policy = policy or RetryPolicy(max_attempts=MAX_ATTEMPTS, base_seconds=runtime.settings.notify_retry_base_seconds,
                                            cap_seconds=CAP_SECONDS)
        self.batch, self.timeout = batch, timeout
        self.lease = timedelta(seconds=timeout * batch + 30)
        key = runtime.settings.notify_api_key
        self.client = NotificationsAPIClient(key.get_secret_value(), base_url=runtime.settings.notify_base_url,
                                             timeout=timeout) if key is not None else None

    @property
    def enabled(self) -> bool:
        return self.client is not None and bool(self.config.notifications)

    def run(self) -> int:
        """Queues and sends what is due now; returns how many messages Notify accepted."""
        if not self.enabled:
            return 0
        now = datetime.now(UTC)
        store.queue_due(self.runtime.engine, self.config.forms("acknowledgement"), self.config.forms("closed"), now)
        return sum(self._send(message) for message in store.claim(self.runtime.engine, self.batch, self.lease, now))

    def _values(self, entry: FormNotifications, message: Message, claimed: store.Claimed, answers: Any) -> dict[str, str]:
        form = self.runtime.forms.get(claimed.form_id, claimed.form_version)
        tenant = self.runtime.config.tenants.get(claimed.tenant)
        hub_values = {
            "reference": claimed.reference, "form_id": claimed.form_id,
            "form_title": form.title if form is not None else claimed.form_id,
            "tenant_name": tenant.name if tenant is not None else claimed.tenant,
            "status": (claimed.status or "").replace("_", " "),
            "received_date": claimed.received_at.date().isoformat(),
        }
        values = {}
        for name, source in message.personalisation.items():
            found = pointer_value(answers, source) if source.startswith("/") else hub_values[source]
            values[name] = "" if found is None else str(found)
        return values

    def _compose(self, claimed: store.Claimed) -> tuple[str, str, str, dict[str, str]]:
        """(channel, address, template id, personalisation) of one message."""
        entry = self.config.for_submission(claimed.tenant, claimed.form_id)
        message = entry.message(claimed.kind) if entry is not None else None
        if entry is None or message is None:
            raise Unsendable(f"no {claimed.kind} message is configured for {claimed.form_id} any more")
        if claimed.payload is None:
            raise Unsendable("the answers were purged or erased")
        try:
            answers = self.runtime.sealer.open(claimed.payload)
        except ConfigError as exc:
            raise Unsendable(f"the answers cannot be opened: {type(exc).__name__}") from None
        email = pointer_value(answers, entry.email) if entry.email else None
        phone = pointer_value(answers, entry.phone) if entry.phone else None
        values = self._values(entry, message, claimed, answers)
        if message.email_template and isinstance(email, str) and email.strip():
            return "email", email.strip(), message.email_template, values
        if message.sms_template and isinstance(phone, str) and phone.strip():
            return "sms", phone.strip(), message.sms_template, values
        raise Unsendable("the resident gave no e-mail address or mobile number this message can go to")

    def _send(self, claimed: store.Claimed) -> bool:
        fields = {"reference": claimed.reference, "kind": claimed.kind, "attempt": claimed.attempts}
        now = datetime.now(UTC)
        try:
            channel, address, template, values = self._compose(claimed)
        except Unsendable as exc:
            store.settle(self.runtime.engine, claimed, "failed", now, error=str(exc))
            log.info("notification_not_sendable", reason=str(exc), **fields)
            return False
        assert self.client is not None
        # Notify's reference: the resident's case and which message, so a council can find it in Notify
        reference = f"{claimed.reference}/{claimed.kind}"
        try:
            if channel == "email":
                sent = self.client.send_email_notification(address, template, values, reference=reference)
            else:
                sent = self.client.send_sms_notification(address, template, values, reference=reference)
        except HTTPError as exc:
            return self._failed(claimed, channel, exc, fields)
        store.settle(self.runtime.engine, claimed, "sent", datetime.now(UTC), channel=channel, notify_id=str(sent.get("id")))
        log.info("notification_sent", channel=channel, notify_id=sent.get("id"), **fields)
        return True

    def _failed(self, claimed: store.Claimed, channel: str, exc: HTTPError, fields: dict[str, Any]) -> bool:
        status = exc.status_code
        messages = exc.message if isinstance(exc.message, list) else [{"message": str(exc.message)}]
        # Notify's own reasons name fields and templates, never the address sent
        reason = f"Notify answered {status}: " + "; ".join(str(m.get("message", "")) for m in messages if isinstance(m, dict))
        now = datetime.now(UTC)
        transient = status >= 500 or status == 429
        if not transient or claimed.attempts >= self.policy.max_attempts:
            store.settle(self.runtime.engine, claimed, "failed", now, error=reason[:500], channel=channel)
            log.warning("notification_failed", status=status, error=reason[:500], **fields)
            return False
        wait = backoff_seconds(self.policy, claimed.attempts)
        store.settle(self.runtime.engine, claimed, "retrying", now, now + timedelta(seconds=wait), reason[:500], channel)
        log.info("notification_retry_scheduled", status=status, retry_in_seconds=round(wait, 3), **fields)
        return False
