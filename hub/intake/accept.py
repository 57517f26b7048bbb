"""Storing a valid submission, the same way whichever front door it came through (the intake
API, Open311, GOV.UK Forms): route it, store it with its deliveries, wake the relay, count it.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi.responses import JSONResponse

from hub import metrics
from hub.config.files import Client
from hub.intake.forms import Form
from hub.intake.group_commit import IntakeBatcher
from hub.logs import get_logger, personal_data
from hub.privacy.sealing import subject_digest
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store import submissions as store

log = get_logger("hub.intake")


async def store_submission(
    runtime: Runtime,
    relay: Relay | None,
    batcher: IntakeBatcher,
    client: Client,
    form: Form,
    payload: Any,
    body_sha256: str,
    idempotency_key: str | None,
    source: str,
) -> store.Accepted:
    """Stores a submission already validated against `form`; raises IdempotencyConflict when
    the key was used before with another body."""
    connectors = runtime.router.connectors_for(client.tenant, form.form_id, payload)
    new = store.NewSubmission(
        tenant=client.tenant,
        client_id=client.id,
        form_id=form.form_id,
        form_version=form.version,
        sealed_payload=runtime.sealer.seal(payload),
        body_sha256=body_sha256,
        idempotency_key=idempotency_key,
        connectors=connectors,
        reference_prefix=runtime.config.tenants[client.tenant].reference_prefix,
        # keyed digests, never the addresses: they find the resident's submissions for access and erasure
        subject_links=tuple(
            (kind, subject_digest(runtime.index_key, kind, value)) for kind, value in form.subject_identifiers(payload)
        ),
    )
    with personal_data(form.pii_values(payload)):
        accepted = await batcher.accept(new)
        if accepted.created and relay is not None:
            relay.wake()
        metrics.SUBMISSIONS.labels(form.form_id, "accepted" if accepted.created else "repeat").inc()
        with structlog.contextvars.bound_contextvars(reference=accepted.reference):
            if not connectors:
                log.warning("submission_unrouted", form=form.form_id, tenant=client.tenant)
            log.info("submission_accepted", form=form.form_id, client=client.id, source=source, deliveries=connectors, repeat=not accepted.created)
    return accepted


def receipt(runtime: Runtime, accepted: store.Accepted) -> JSONResponse:
    """The 202 answer every front end gets: the reference and where to follow it."""
    status_url = f"{runtime.settings.public_url.rstrip('/')}/v1/submissions/{accepted.reference}"
    body = {"reference": accepted.reference, "status_url": status_url, "received_at": accepted.received_at.isoformat()}
    return JSONResponse(body, status_code=202, headers={"Location": status_url})
