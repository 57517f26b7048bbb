"""The console's pages: the dashboard, the submission search, one submission (redacted, with an
audited reveal); parked and failed deliveries are in hub/console/deliveries.py. Each one checks
role and tenant on the server and calls the admin API's own services: another council's
reference is "not found".
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub.api.routes.admin import _visible
from hub.api.routes.admin_submissions import _submission
from hub.console import figures, search, static_files
from hub.console.session import RuntimeDep, SignedDep, router
from hub.console.web import ConsoleError, SecurityHeaders, SignInNeeded, console_error, sign_in_needed
from hub.store import circuits
from hub.store.replay import ParkedFilter, counts_by_connector, find_parked

Reference = Annotated[str, Path(min_length=1, max_length=32)]


@router.get("")
async def dashboard(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Today and the last seven days, per form and per destination; connectors needing attention."""
    signed.require("viewer")
    now = datetime.now(UTC)
    windows = [("Today", datetime.combine(now.date(), time(), UTC)), ("Last 7 days", now - timedelta(days=7))]
    shown = []
    for title, since in windows:
        found = await run_in_threadpool(figures.figures, runtime.engine, since, signed.scope)
        shown.append({"title": title, "since": since, "forms": [figures.as_row(x) for x in found.forms],
                      "connectors": [figures.as_row(x) for x in found.connectors]})
    states = await run_in_threadpool(circuits.read_all, runtime.engine)
    counts = await run_in_threadpool(counts_by_connector, runtime.engine, signed.scope, ("pending", "retrying"))
    visible = [name for name in runtime.connector_names() if _visible(signed.staff, runtime.config.connectors[name])]
    depths = await run_in_threadpool(runtime.transport.depths, visible)
    attention, waiting = [], []
    for name in visible:
        circuit = states.get(name)
        if circuit is not None and (circuit.state != "closed" or circuit.paused_at is not None):
            attention.append({"name": name, "circuit": circuit.state, "paused": circuit.paused_at is not None})
        by_state = counts.get(name, {})
        queues = {q.kind: q for q in depths.get(name, [])} if depths is not None else {}
        waiting.append({"name": name, "pending": by_state.get("pending", 0), "retrying": by_state.get("retrying", 0),
                        "queue": queues.get("work"), "dead": queues.get("dead")})
    return signed.page(request, "dashboard.html", windows=shown, attention=attention, waiting=waiting,
                       broker_answered=depths is not None, per_message=runtime.settings.relay_deliveries_per_message)


def _day(value: str, label: str, field: str, errors: list[dict[str, str]]) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append({"field": field, "text": f"{label} must be a date like 2025-03-31"})
        return None


@router.get("/submissions")
async def submissions(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Search by reference, portal reference, back-office reference, form, state and date received."""
    signed.require("viewer")
    given = {k: request.query_params.get(k, "").strip()[:255] for k in
             ("reference", "portal_reference", "back_office_reference", "form", "state", "from", "to", "page")}
    errors: list[dict[str, str]] = []
    if given["state"] and given["state"] not in figures.STATES:
        errors.append({"field": "state", "text": "Choose a delivery state from the list"})
    received_from = _day(given["from"], "Received from", "from", errors)
    received_to = _day(given["to"], "Received to", "to", errors)
    if received_from and received_to and received_to < received_from:
        errors.append({"field": "to", "text": "Received to must be the same as or after received from"})
    page_number = int(given["page"]) if given["page"].isdigit() else 1
    found = None
    if not errors:
        query = search.Query(
            reference=given["reference"] or None, portal_reference=given["portal_reference"] or None,
            back_office_reference=given["back_office_reference"] or None, form=given["form"] or None,
            state=given["state"] or None, received_from=received_from, received_to=received_to, tenant=signed.scope,
        )
        found = await run_in_threadpool(search.search, runtime.engine, query, page_number)
    kept = {k: v for k, v in given.items() if v and k != "page"}
    forms = runtime.forms.ids()
    return signed.page(request, "submissions.html", status=400 if errors else 200, given=given, errors=errors,
                       found=found, kept=kept, states=figures.STATES, forms=forms)


async def _found(runtime: Any, signed: Any, reference: str, reveal: bool) -> dict[str, Any]:
    """The admin API's own view of one submission: as a viewer sees it (personal answers hidden)
    unless `reveal`, which is the caseworker's view, audited by that same service."""
    staff = signed.staff if reveal else signed.staff.model_copy(update={"roles": ("viewer",)})
    found = await run_in_threadpool(_submission, runtime, staff, reference)
    if found is None:
        raise ConsoleError(404, "Submission not found", f"There is no submission {reference} for you to see.")
    return found


@router.get("/submissions/{reference}")
async def submission(request: Request, reference: Reference, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """One submission: deliveries, timeline and its answers with personal data hidden."""
    signed.require("viewer")
    found = await _found(runtime, signed, reference, reveal=False)
    return signed.page(request, "submission.html", found=await _replayable(runtime, signed, found), revealed=False)


async def _replayable(runtime: Any, signed: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Each parked delivery's id (from the replay service's own finder), for an operator's button."""
    if not signed.staff.can("operator"):
        return found
    for delivery in found["deliveries"]:
        if delivery["state"] == "parked":
            flt = ParkedFilter(connector=delivery["connector"], tenant=signed.scope)
            parked = await run_in_threadpool(find_parked, runtime.engine, flt)
            delivery["delivery_id"] = next((p["delivery_id"] for p in parked if p["reference"] == found["reference"]), None)
    return found


@router.post("/submissions/{reference}/reveal")
async def reveal(request: Request, reference: Reference, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The same page with the personal answers shown: caseworkers and above, each view audited."""
    await _found(runtime, signed, reference, reveal=False)  # another council's reference: 404 before 403
    signed.require("caseworker")
    found = await _found(runtime, signed, reference, reveal=True)
    return signed.page(request, "submission.html", found=await _replayable(runtime, signed, found), revealed=True)


def install(app: FastAPI) -> None:
    """The console's routes, static files, headers and error pages on the hub's app."""
    from hub.console import admin_pages, connectors, deliveries, savings_pages  # noqa: F401 - their routes join the console's router

    app.include_router(router)
    static_files.install(app)
    app.add_exception_handler(ConsoleError, console_error)
    app.add_exception_handler(SignInNeeded, sign_in_needed)
    app.add_middleware(SecurityHeaders)
