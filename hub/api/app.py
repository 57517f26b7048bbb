"""The HTTP application: intake and status for front ends, health, readiness and metrics.

`create_app` takes a built runtime (and the relay to wake after each commit) so tests, the
demo and `hub api` all assemble the same app. On start it audits a changed configuration.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from hub.api import fast_intake, problems
from hub.api.ratelimit import RateLimits
from hub.api.routes import (
    admin,
    admin_clients,
    admin_corrections,
    admin_savings,
    admin_submissions,
    attachments,
    georeport,
    govuk_forms,
    payments,
    ratings,
    residents,
    staff_sign_in,
    status_updates,
    submissions,
    webhook_subscriptions,
)
from hub.console import pages as console
from hub.intake.accept import Intake
from hub.logs import get_logger
from hub.payments.service import Payments
from hub.relay.outbox_relay import Relay
from hub.relay.transport import BrokerCheck
from hub.runtime import Runtime
from hub.store import audit, db
from hub.store.clients import ClientCache

log = get_logger("hub.api")


def _audit_configuration(runtime: Runtime) -> None:
    """One `config.change` entry whenever a process starts on configuration files that differ
    from those last recorded; a database not reachable yet must not stop the API starting."""
    try:
        detail = audit.record_config_change(runtime.engine, runtime.settings.config_dir)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("config_change_not_audited", error=type(exc).__name__)
        return
    if detail is not None:
        log.info("config_changed", digest=detail["digest"], changed=detail["changed"])


def create_app(runtime: Runtime, relay: Relay | None = None, manage_relay: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_audit_configuration, runtime)
        if relay is not None and manage_relay:
            relay.start()
        try:
            yield
        finally:
            if relay is not None and manage_relay:
                await run_in_threadpool(relay.stop)

    app = FastAPI(
        title="Council Connector Hub",
        version="0.1.0",
        description="Takes a council form submission from any front end, validates it, gives a reference "
        "at once, and delivers it to every back office that needs it.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.relay = relay
    # set when `hub api` is told to stop (hub.api.shutdown): /readyz answers 503 from then on
    app.state.draining = threading.Event()
    app.state.intake = Intake(runtime, relay)
    app.state.clients = ClientCache(runtime.engine, runtime.settings.client_cache_seconds)
    app.state.limits = RateLimits(runtime.settings, runtime.config)
    problems.install(app)
    app.include_router(submissions.router)
    app.include_router(georeport.create_router(runtime.settings.config_dir / "open311" / "services.yaml"))
    app.include_router(govuk_forms.create_router(
        runtime.settings.config_dir / "govuk" / "forms.yaml", runtime.settings.standards_dir, runtime.settings.max_string_length))
    app.include_router(admin.router)
    app.include_router(admin_submissions.router)
    app.include_router(status_updates.router)
    app.include_router(webhook_subscriptions.router)
    app.include_router(residents.router)
    app.include_router(ratings.router)
    app.include_router(attachments.router)
    app.include_router(payments.router)
    # fees are read at start: a broken config/payments/payments.yaml stops the process here
    Payments.of(runtime)
    app.include_router(admin_clients.router)
    app.include_router(admin_corrections.router)
    app.include_router(admin_savings.router)
    app.include_router(staff_sign_in.router)
    # the staff console: its pages, /console/static, its headers and error pages (docs/console.md)
    console.install(app)
    # the busiest request skips FastAPI's dependency solving; the route above still documents it
    fast_intake.install(app)

    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the bounded answer value the GOV.UK Forms body refers to."""
        if app.openapi_schema is None:
            schema = document()
            schema.setdefault("components", {}).setdefault("schemas", {})[govuk_forms.BOUNDED_VALUE] = (
                govuk_forms.bounded_value(runtime.settings.max_string_length))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    readiness = {"application/json": {"schema": {
        "type": "object", "required": ["ready", "checks"],
        "properties": {"ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}},
    }}}

    broker = BrokerCheck(runtime.transport)

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={200: {"description": "Ready: the database answers and the relay runs (the broker is reported)",
                         "content": readiness},
                   503: {"description": "Not ready: the database or the relay failed", "content": readiness}},
    )
    async def readyz() -> JSONResponse:
        checks = {"database": await run_in_threadpool(db.answers, runtime.engine), "broker": await run_in_threadpool(broker.reachable)}
        if relay is not None:
            checks["relay"] = relay.health()["running"] or not manage_relay
        # The broker is reported, not required: while it is down intake still stores submissions
        # and their outbox rows, and the relay sends them when it is back. Taking every api pod
        # out of service then would turn residents away for nothing (docs/deploy.md, runbook).
        ready = all(ok for name, ok in checks.items() if name != "broker")
        if app.state.draining.is_set():
            return JSONResponse({"ready": False, "checks": checks, "draining": True}, status_code=503)
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
