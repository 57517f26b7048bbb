"""One delivery, as steps that each end in a typed outcome (hub.delivery.outcomes), and one place
that settles it:

    handle: load → open the payload → gate (early? circuit open? paused?) → map → send → classify
    settle: store it (one transaction with its webhook event) → breaker → metrics → log

Runs in a worker's sending threads; the Result tells the consumer what to do with the message
(acknowledge it, or put it in a delay queue first).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from connectors.base import DeliveryContext, refuse_files
from hub import metrics
from hub.attachments import delivery as attached_files
from hub.delivery.alerts import Alerts
from hub.delivery.outcomes import DeferUntil, Delivered, Outcome, Park, RetryAt, Skipped
from hub.delivery.retry import decide
from hub.delivery.webhook_sender import OutcomeEvents
from hub.errors import ConfigError, DeliveryError, MappingError, PermanentError, TransientError
from hub.logs import get_logger, personal_data, scrubbed
from hub.privacy.copies import ERASED_REASON, quoted_forms
from hub.runtime import Runtime
from hub.store import attachments as attachment_rows
from hub.store import circuits, deliveries
from hub.store.db import KeptConnection
from hub.store.group_call import GroupCall

log = get_logger("hub.delivery.attempt")

# a message back from a delay queue this early is waited out again rather than sent
EARLY_SECONDS = 0.25
# how long a half-open circuit's probe may take before another worker may probe
PROBE_GRACE_SECONDS = 60.0
# the longest a paused connector's delivery waits before it looks again whether it was resumed
PAUSE_RECHECK_SECONDS = 30.0
_CIRCUIT_CODES = {"closed": 0, "half_open": 1, "open": 2}


def idempotency_key(reference: str, connector: str) -> str:
    return f"{reference}/{connector}"


def mapping_meta(reference: str, form_id: str, form_version: int, received_at: datetime, tenant: str, connector: str) -> dict[str, Any]:
    """What a mapping may read beside the payload (`meta.*`): the worker's, and the console's previews."""
    return {
        "reference": reference,
        "form_id": form_id,
        "form_version": form_version,
        "received_at": received_at.isoformat(),
        "tenant": tenant,
        "connector": connector,
        "idempotency_key": idempotency_key(reference, connector),
    }


def prepared(job: deliveries.DeliveryJob, attempt: int) -> tuple[dict[str, Any], DeliveryContext]:
    """What the mapping may read besides the answers (`meta`), and the connector's context, for
    this attempt of the delivery (the console's preview of a correction builds the same)."""
    key = idempotency_key(job.reference, job.connector)
    meta = mapping_meta(job.reference, job.form_id, job.form_version, job.received_at, job.tenant, job.connector)
    return meta, DeliveryContext(job.reference, job.connector, job.delivery_id, key, attempt, job.tenant, job.form_id)


def mapped(
    runtime: Runtime, job: deliveries.DeliveryJob, payload: Any, meta: dict[str, Any],
    files: list[tuple[str, attachment_rows.Attachment]] | None = None,
) -> Any:
    """The record the delivery's mapping makes of these answers and the submission's files
    (raises MappingError, or PermanentError when there are no answers left to send)."""
    mapping = runtime.mappings.get((job.form_id, job.connector))
    if mapping is None:
        raise MappingError(f"no mapping from form {job.form_id!r} to connector {job.connector!r}")
    if payload is None:
        raise PermanentError("the submission's payload was purged or erased before it could be delivered")
    if files:
        record = mapping.apply(payload, meta, attached_files.scope(files, runtime.attachment_links, runtime.sealer))
        return attached_files.resolve(record, runtime.attachment_store)
    return mapping.apply(payload, meta)


@dataclass(frozen=True)
class Result:
    outcome: str
    # when set, the message goes to a delay queue for this long before it is acknowledged
    delay_seconds: float | None = None


class DeliveryHandler:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._circuits: dict[str, tuple[float, circuits.Circuit]] = {}
        self._lock = threading.Lock()
        engine = runtime.engine
        # the sending threads' loads and successes reach the database together, one statement each;
        # on PostgreSQL each grouping thread keeps its own connection (no checkout or ping per batch)
        postgres = engine.dialect.name == "postgresql"
        # (given back to the pool after a second without work)
        loads, records = (KeptConnection(engine), KeptConnection(engine)) if postgres else (None, None)
        self._load: GroupCall[int, deliveries.DeliveryJob | None] = GroupCall(
            lambda ids: deliveries.load_many(engine, ids, loads), "hub-load", on_idle=loads.close if loads else None
        )
        self._delivered: GroupCall[tuple[int, datetime, str | None], int | None] = GroupCall(
            lambda done: deliveries.record_delivered_many(engine, done, records), "hub-record",
            on_idle=records.close if records else None,
        )
        # tells the submitting client's webhooks, if it has any, that a delivery finished
        self.events = OutcomeEvents(runtime)
        # e-mails the tenant's staff about parks and open circuits, off this thread (docs/alerts.md)
        self.alerts = Alerts(runtime)

    # -- circuit breaker, read through a short cache so the hot path rarely touches the database

    def _circuit(self, connector: str) -> circuits.Circuit:
        with self._lock:
            cached = self._circuits.get(connector)
        if cached is not None and time.monotonic() - cached[0] < 0.5:
            return cached[1]
        return self._remember(circuits.read(self.runtime.engine, connector))

    def _remember(self, circuit: circuits.Circuit) -> circuits.Circuit:
        with self._lock:
            self._circuits[circuit.connector] = (time.monotonic(), circuit)
        metrics.CIRCUIT_STATE.labels(circuit.connector).set(_CIRCUIT_CODES[circuit.state])
        return circuit

    def _may_send(self, connector: str, now: datetime) -> float | None:
        """None when the connector may be called now; else how long its deliveries must wait."""
        circuit = self._circuit(connector)
        if circuit.paused_at is not None:
            # a delivery looks again soon after a pause (most are short) and then every
            # PAUSE_RECHECK_SECONDS, so a long pause does not churn through the queues
            paused_for = (now - circuit.paused_at).total_seconds()
            return min(PAUSE_RECHECK_SECONDS, max(1.0, paused_for))
        if circuit.state == "closed":
            return None
        if circuit.state == "open" and circuit.opened_until and circuit.opened_until > now:
            return (circuit.opened_until - now).total_seconds()
        if circuits.try_probe(self.runtime.engine, connector, PROBE_GRACE_SECONDS):
            log.info("circuit_half_open", connector=connector)
            self._remember(circuits.Circuit(connector, "half_open", circuit.failures, None))
            return None
        return 1.0

    # -- one delivery: the steps, each ending in an outcome

    def handle(self, delivery_id: int) -> Result:
        job = self._load(delivery_id)
        if job is None:
            log.warning("delivery_unknown", delivery_id=delivery_id)
            return self.settle(None, Skipped("unknown"))
        if not job.is_open:
            return self.settle(job, Skipped(f"already-{job.state}"))  # a redelivered message for a finished delivery
        if job.erased_at is not None:  # reopened after an erasure (a restore, a hand edit): what is left is not sent
            return self.settle(job, Park(datetime.now(UTC), ERASED_REASON, "permanent"))
        try:
            payload = self.runtime.sealer.open(job.payload) if job.payload is not None else None
        except ConfigError as error:  # sealed with a key no longer listed: a retry cannot help
            return self.settle(job, Park(datetime.now(UTC), str(error), "permanent"))
        form = self.runtime.forms.get(job.form_id, job.form_version)
        files = attachment_rows.of_delivery(self.runtime.engine, job.delivery_id) if form and form.attachment_fields else []

        # as typed and as a back office's JSON error would quote them, for the stored reason and the
        # logs; a photo's kept GPS position is personal data too
        def pii() -> list[str]:
            answers = form.pii_values(payload) if form is not None and payload is not None else []
            return quoted_forms([*answers, *attached_files.positions(files, self.runtime.sealer)])

        with personal_data(pii), structlog.contextvars.bound_contextvars(
            reference=job.reference, delivery_id=job.delivery_id, connector=job.connector
        ):
            return self.settle(job, self._gate(job) or self._scanned(job, files) or self._attempt(job, payload, files))

    def park_dead_letter(self, delivery_id: int) -> Result:
        """A message the broker dead-lettered because workers kept stopping while handling it."""
        job = deliveries.load(self.runtime.engine, delivery_id)
        if job is None or not job.is_open:
            return self.settle(job, Skipped("already-finished"))
        limit = self.runtime.settings.delivery_limit
        reason = f"workers stopped more than {limit} times while handling this delivery (broker delivery limit)"
        if job.erased_at is not None:
            reason = ERASED_REASON
        return self.settle(job, Park(datetime.now(UTC), reason, "permanent"))

    def _gate(self, job: deliveries.DeliveryJob) -> DeferUntil | None:
        """Holds the delivery back without an attempt: early from a delay queue, or its
        connector's circuit is open or staff paused it. None: send now."""
        now = datetime.now(UTC)
        if job.next_attempt_at and (job.next_attempt_at - now).total_seconds() > EARLY_SECONDS:
            return DeferUntil(job.next_attempt_at, record=False)
        wait = self._may_send(job.connector, now)
        if wait is None:
            return None
        log.info("circuit_open_deferred", wait_seconds=round(wait, 3))
        return DeferUntil(now + timedelta(seconds=wait), record=True)

    def _scanned(self, job: deliveries.DeliveryJob, files: list[tuple[str, attachment_rows.Attachment]]) -> DeferUntil | Park | None:
        """Never sends a file the virus scanner has not passed: a quarantined one parks the
        delivery; while one is unscanned (clamd did not answer) it waits for the worker's rescan.
        Without a scanner configured (the demo) files go unscanned, as the hub says at start."""
        now = datetime.now(UTC)
        quarantined, unscanned = attachment_rows.quarantined_or_unscanned(a for _, a in files)
        if quarantined:
            return Park(now, f"attachment {attachment_rows.named(files, quarantined)} was quarantined: the virus scanner found something in it; nothing was sent",
                        "permanent")
        if unscanned and self.runtime.settings.clamd_socket:
            wait = self.runtime.settings.attachment_rescan_seconds
            log.info("attachments_unscanned_deferred", attachments=[a.id for a in unscanned], wait_seconds=wait)
            return DeferUntil(now + timedelta(seconds=wait), record=True)
        return None

    def _attempt(self, job: deliveries.DeliveryJob, payload: Any,
                 files: list[tuple[str, attachment_rows.Attachment]] | None = None) -> Delivered | RetryAt | Park:
        """Maps the payload and sends the record; an error is classified into retry or park."""
        started = datetime.now(UTC)
        attempt = job.attempts + 1
        meta, context = prepared(job, attempt)
        clock = time.perf_counter()
        try:
            record = mapped(self.runtime, job, payload, meta, files)
            connector = self.runtime.connector(job.connector)
            refuse_files(connector, record)  # a plug-in that cannot send files never silently drops one
            sent = connector.send(record, context)
        except DeliveryError as error:
            return self._classify(job, attempt, started, error)
        except ConfigError as error:  # e.g. a credential's environment variable is not set
            return self._classify(job, attempt, started, PermanentError(f"configuration: {error}"))
        except Exception as exc:  # a fault in connector code: retried like a transient error, never looped
            log.exception("connector_raised", attempt=attempt)
            return self._classify(job, attempt, started, TransientError(f"unexpected {type(exc).__name__} in connector"))
        finally:
            metrics.DELIVERY_SECONDS.labels(job.connector).observe(time.perf_counter() - clock)
        return Delivered(started, attempt, sent.external_reference)

    def _classify(self, job: deliveries.DeliveryJob, attempt: int, started: datetime, error: DeliveryError) -> RetryAt | Park:
        """Retry or park, by the error's class and the attempts left (hub.delivery.retry)."""
        # a mapping or back-office error may quote an answer: the stored reason must not
        error.reason = scrubbed(error.reason)
        connector = self.runtime.config.connectors[job.connector]
        if isinstance(error, TransientError):
            self._breaker_failed(job.connector)
        decision = decide(error, connector.retry, attempt - job.attempts_base)
        if decision.park:
            return Park(started, error.reason, "transient" if isinstance(error, TransientError) else "permanent", attempt)
        return RetryAt(started, attempt, datetime.now(UTC) + timedelta(seconds=decision.delay_seconds), error.reason)

    # -- the one place an outcome is stored, counted and logged

    def settle(self, job: deliveries.DeliveryJob | None, outcome: Outcome) -> Result:
        """Stores the outcome (the delivery's new state with its webhook event, in one transaction),
        tells the breaker, counts and logs it; returns what the consumer does with the message."""
        if isinstance(outcome, Skipped):
            return Result(outcome.why)
        if job is None:  # only a Skipped outcome comes without its delivery
            return Result("unknown")
        if isinstance(outcome, Delivered):
            notice = self.events.notice(job.client_id, job.delivery_id, job.reference, job.connector, "delivered",
                                        outcome.external_reference)
            if notice is None:  # the common case: grouped with other sending threads' successes
                self._delivered((job.delivery_id, outcome.started, outcome.external_reference))
            else:
                deliveries.record_delivered(self.runtime.engine, job.delivery_id, outcome.started, outcome.external_reference, notice)
            self._breaker_succeeded(job.connector)
            metrics.DELIVERIES.labels(job.connector, "delivered").inc()
            log.info("delivered", attempt=outcome.attempt, external_reference=outcome.external_reference)
            return Result("delivered")
        if isinstance(outcome, Park):
            notice = self.events.notice(job.client_id, job.delivery_id, job.reference, job.connector, "parked")
            deliveries.record_parked(self.runtime.engine, job.delivery_id, outcome.started, outcome.reason, outcome.kind, notice)
            metrics.DELIVERIES.labels(job.connector, "parked").inc()
            self.alerts.parked(job.tenant, job.connector, outcome.reason)
            log.warning("delivery_parked", reference=job.reference, delivery_id=job.delivery_id, connector=job.connector,
                        attempt=outcome.attempt, reason=outcome.reason, outcome=outcome.kind)
            return Result("parked")
        if isinstance(outcome, RetryAt):
            deliveries.record_retry(self.runtime.engine, job.delivery_id, outcome.started, outcome.reason, outcome.at)
            seconds = _seconds_until(outcome.at)
            metrics.DELIVERIES.labels(job.connector, "retry").inc()
            log.info("delivery_retry_scheduled", attempt=outcome.attempt, reason=outcome.reason, retry_in_seconds=round(seconds, 3))
            return Result("retrying", seconds)
        if outcome.record:
            deliveries.defer(self.runtime.engine, job.delivery_id, outcome.until)
        return Result("deferred", _seconds_until(outcome.until))

    # -- the circuit breaker's view of attempts

    def _breaker_failed(self, connector: str) -> None:
        policy = self.runtime.config.connectors[connector].circuit
        before = self._circuit(connector).state
        circuit = self._remember(circuits.record_failure(self.runtime.engine, connector, policy))
        if circuit.opened_now:  # the one failure (of every worker's) that opened it
            self.alerts.circuit_opened(connector, circuit.failures, policy.open_seconds)
        if circuit.state == "open" and before != "open":
            log.warning("circuit_opened", connector=connector, failures=circuit.failures, open_seconds=policy.open_seconds)

    def _breaker_succeeded(self, connector: str) -> None:
        circuit = self._circuit(connector)
        if circuit.state != "closed" or circuit.failures:
            if circuits.record_success(self.runtime.engine, connector):
                log.warning("circuit_closed", connector=connector)
            self._remember(circuits.Circuit(connector, "closed", 0, None))


def _seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
