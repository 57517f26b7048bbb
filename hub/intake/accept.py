"""The one way in. Every front door (the v1 API and its fast path, GOV.UK Forms, Open311) parses
its own request and hands the payload here; what happens next happens here, in this order:

    form_for(client, form_id)   404 unless the client may submit that form and its council offers it
    accept(submission)          bounds (depth, length, NUL) and the form's JSON Schema: 422 naming
                                every failing field; routing; then one transaction (group commit)
                                storing the submission, its deliveries and their outbox rows; a
                                reused Idempotency-Key with another body is a 409; the relay is woken
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import structlog
from starlette.concurrency import run_in_threadpool

from hub import metrics
from hub.attachments import fields as attachment_fields
from hub.config.files import Client
from hub.errors import NotFound, ServiceUnavailable, ValidationFailed
from hub.intake.bounds import bound_errors
from hub.intake.forms import FieldError, Form
from hub.intake.group_commit import IntakeBatcher
from hub.logs import get_logger, personal_data
from hub.payments.service import Payments
from hub.privacy.sealing import subject_digest
from hub.relay.outbox_relay import Relay
from hub.residents.record import resident_digest
from hub.runtime import Runtime
from hub.store import attachments as attachment_store
from hub.store import submissions as store
from hub.store.residents import SUBJECT_KIND

log = get_logger("hub.intake")


@dataclass(frozen=True)
class Submission:
    """What a front door hands in: a payload already parsed (and translated, for Open311)."""

    client: Client
    form: Form
    payload: Any
    # the hash of the body as sent (or of the translated payload): a repeat with another body is a conflict
    body_sha256: str
    idempotency_key: str | None
    # which front door: "api", "govuk-forms", "open311"
    source: str
    # the signed-in resident's `sub` at the portal's identity provider (Resident-Subject header)
    resident: str | None = None
    # attachment id -> the file's name, for files sent inline with the submission (multipart)
    file_names: dict[str, str] | None = None


class Intake:
    """The hub's intake, one per API process: the runtime's forms and routes, the group-commit
    writer and the relay to wake after each commit."""

    def __init__(self, runtime: Runtime, relay: Relay | None, batcher: IntakeBatcher | None = None) -> None:
        self.runtime = runtime
        self.relay = relay
        self.batcher = batcher or IntakeBatcher(runtime.engine)
        # submissions this process is taking in (body read, checked, waiting for their transaction)
        self.in_flight = 0
        self.max_in_flight = runtime.settings.intake_max_in_flight

    def refuse_if_full(self) -> None:
        """503 with Retry-After when `max_in_flight` submissions are already being taken in."""
        if self.in_flight >= self.max_in_flight:
            metrics.SHED.inc()
            raise ServiceUnavailable(
                f"The hub is taking in {self.in_flight} submissions, its limit; nothing was stored. "
                "Send it again after the seconds Retry-After gives.",
                headers={"Retry-After": "1"},
            )

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """A front door's whole handling of one submission, counted; past `max_in_flight` the
        submission is refused at once (503, Retry-After, nothing read or stored), so a flood
        answers quickly instead of making every resident wait (docs/scale.md)."""
        self.refuse_if_full()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def may_submit(self, client: Client, form_id: str) -> bool:
        """A client submits only the forms it is allowed AND its council offers."""
        tenant = self.runtime.config.tenants.get(client.tenant)
        return tenant is not None and tenant.offers(form_id) and client.may_submit(form_id)

    def form_for(self, client: Client, form_id: str, version: int | None = None, what: str | None = None) -> Form:
        """The form this client may submit, or NotFound (another council's form is not found either)."""
        form = self.runtime.forms.get(form_id, version)
        if form is None or not self.may_submit(client, form_id):
            named = what or f"form {form_id!r}" + (f" version {version}" if version else "")
            raise NotFound(f"There is no {named} for this client.")
        return form

    def problems(self, form: Form, payload: Any) -> list[FieldError]:
        """Every way the payload breaks the hub's bounds, else every way it breaks the form."""
        settings = self.runtime.settings
        return bound_errors(payload, settings.max_depth, settings.max_string_length) or form.errors(payload)

    def _attachments(self, submission: Submission) -> attachment_fields.Checked:
        """The ids the payload's attachment fields name, checked against the tenant's uploads."""
        form = submission.form
        ids = [i for f in form.attachment_fields for i in f.ids(submission.payload)]
        with self.runtime.engine.connect() as conn:
            found = attachment_store.many(conn, submission.client.tenant, ids)
        return attachment_fields.check(form.attachment_fields, submission.payload, found, submission.file_names)

    async def accept(self, submission: Submission) -> store.Accepted:
        """Validates, routes and stores the submission; raises ValidationFailed (422) or
        IdempotencyConflict (409). A repeat of the same body returns the first submission."""
        form, payload, client = submission.form, submission.payload, submission.client
        errors = self.problems(form, payload)
        if errors:
            metrics.SUBMISSIONS.labels(form.form_id, "invalid").inc()
            # only pointers are logged: the values may be personal data
            log.info("submission_invalid", form=form.form_id, client=client.id, source=submission.source,
                     pointers=[e.pointer for e in errors])
            raise ValidationFailed(f"{len(errors)} field(s) need attention.", errors=[e.as_dict() for e in errors])
        runtime = self.runtime
        links: list[tuple[str, str]] = []
        if form.attachment_fields:
            checked = await anyio.to_thread.run_sync(self._attachments, submission)
            if checked.errors:
                metrics.SUBMISSIONS.labels(form.form_id, "invalid").inc()
                log.info("submission_invalid", form=form.form_id, client=client.id, source=submission.source,
                         pointers=[e["pointer"] for e in checked.errors])
                raise ValidationFailed(f"{len(checked.errors)} attachment(s) need attention.", errors=checked.errors)
            links = checked.links
        connectors = runtime.router.connectors_for(client.tenant, form.form_id, payload)
        new = store.NewSubmission(
            tenant=client.tenant,
            client_id=client.id,
            form_id=form.form_id,
            form_version=form.version,
            sealed_payload=runtime.sealer.seal(payload),
            body_sha256=submission.body_sha256,
            idempotency_key=submission.idempotency_key,
            connectors=connectors,
            reference_prefix=runtime.config.tenants[client.tenant].reference_prefix,
            # keyed digests, never the addresses: they find the resident's submissions for access and erasure
            subject_links=tuple(
                (kind, subject_digest(runtime.index_key, kind, value)) for kind, value in form.subject_identifiers(payload)
            ) + (((SUBJECT_KIND, resident_digest(runtime.index_key, submission.resident)),) if submission.resident else ()),
            attachments=tuple(links),
        )
        fee = Payments.of(runtime).fee_for(client.tenant, form.form_id) if connectors else None
        with personal_data(lambda: form.pii_values(payload)):
            if fee is not None:
                # payment before delivery: stored with its deliveries held, then the payment created
                accepted = await run_in_threadpool(Payments.of(runtime).accept, new, fee)
            else:
                accepted = await self.batcher.accept(new)
            if accepted.created and self.relay is not None:
                self.relay.wake()
            metrics.SUBMISSIONS.labels(form.form_id, "accepted" if accepted.created else "repeat").inc()
            with structlog.contextvars.bound_contextvars(reference=accepted.reference):
                if not connectors:
                    log.warning("submission_unrouted", form=form.form_id, tenant=client.tenant)
                log.info("submission_accepted", form=form.form_id, client=client.id, source=submission.source,
                         deliveries=connectors, repeat=not accepted.created)
        return accepted
