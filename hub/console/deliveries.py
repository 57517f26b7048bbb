"""The console's parked and failed deliveries: a filter (connector, form, reason, state, dates),
replay of one, bulk replay with a dry run, and edit then replay (a correction, previewed as the
field-level diff and the exact body the connector will send, then stored, audited and replayed).

Every page checks role and tenant on the server; another council's delivery is "not found".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub.api.routes.admin import _visible
from hub.console.session import RuntimeDep, Signed, SignedDep, router
from hub.console.web import PREFIX, ConsoleError
from hub.delivery import correction
from hub.errors import ConfigError
from hub.runtime import Runtime
from hub.store import audit
from hub.store.replay import ParkedFilter, erased_among, find_parked, replay

DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
SHOWN = 200
# the console's words for the stored states: "failed" has failed at least once and is retrying
STATES = {"parked": ("parked",), "failed": ("retrying",)}
FILTER_FIELDS = ("connector", "form", "reason", "state", "from", "to")


def _wake(request: Request) -> None:
    relay = getattr(request.app.state, "relay", None)
    if relay is not None:
        relay.wake()


def _connectors(runtime: Runtime, signed: Signed) -> list[str]:
    return [n for n in runtime.connector_names() if _visible(signed.staff, runtime.config.connectors[n])]


def _filter(runtime: Runtime, signed: Signed, given: dict[str, str]) -> tuple[ParkedFilter | None, list[dict[str, str]]]:
    """The filter the fields ask for, or the problems with them (each naming its field)."""
    from hub.console.pages import _day  # the submission search's own date reading

    errors: list[dict[str, str]] = []
    if given["connector"] and given["connector"] not in _connectors(runtime, signed):
        errors.append({"field": "connector", "text": "Choose a connector from the list"})
    if given["form"] and given["form"] not in runtime.forms.ids():
        errors.append({"field": "form", "text": "Choose a form from the list"})
    if len(given["reason"]) > 200:
        errors.append({"field": "reason", "text": "Reason contains must be 200 characters or fewer"})
    if given["state"] not in STATES:
        errors.append({"field": "state", "text": "Choose parked or failed"})
    since = _day(given["from"], "Parked or failed from", "from", errors)
    until = _day(given["to"], "Parked or failed to", "to", errors)
    if since and until and until < since:
        errors.append({"field": "to", "text": "Parked or failed to must be the same as or after the from date"})
    if errors:
        return None, errors
    return ParkedFilter(
        connector=given["connector"] or None, form=given["form"] or None, reason_contains=given["reason"] or None,
        states=STATES[given["state"]], tenant=signed.scope,
        since=datetime.combine(since, time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
    ), []


def _given(source: Any, prefix: str = "") -> dict[str, str]:
    given = {k: str(source.get(prefix + k, "")).strip()[:255] for k in FILTER_FIELDS}
    given["state"] = given["state"] or "parked"
    return given


@router.get("/deliveries")
async def parked(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Parked (or failed) deliveries, filtered; operators tick some, or all that match, to replay."""
    signed.require("viewer")
    given = _given(request.query_params)
    flt, errors = _filter(runtime, signed, given)
    found: list[dict[str, Any]] = []
    if flt is not None:
        found = await run_in_threadpool(find_parked, runtime.engine, ParkedFilter(**{**flt.__dict__, "limit": SHOWN + 1}))
    return signed.page(request, "deliveries_list.html", status=400 if errors else 200, rows=found[:SHOWN], more=len(found) > SHOWN,
                       errors=errors, given=given, connectors=_connectors(runtime, signed), forms=runtime.forms.ids(),
                       states=list(STATES))


@router.post("/deliveries/{delivery_id}/replay")
async def replay_delivery(request: Request, delivery_id: DeliveryId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Re-queues one parked delivery with the admin API's replay service (audited there)."""
    flt = ParkedFilter(ids=(delivery_id,), tenant=signed.scope)
    signed.require("operator")
    done = await run_in_threadpool(replay, runtime.engine, flt, f"staff:{signed.staff.id}")
    if not done:
        raise ConsoleError(404, "Delivery not found", f"There is no parked delivery {delivery_id} for you to replay.")
    _wake(request)
    if signed.form.get("back") == "deliveries":
        return signed.redirect(f"{PREFIX}/deliveries?replayed={delivery_id}")
    return signed.redirect(f"{PREFIX}/submissions/{done[0]['reference']}?replayed={delivery_id}")


# -- bulk replay


def _selection(runtime: Runtime, signed: Signed) -> tuple[ParkedFilter | None, list[int], dict[str, str], list[dict[str, str]]]:
    """(the filter for "all that match", or None; the ticked ids; the filter's fields; problems)."""
    form = signed.form
    given = _given(form, "f_")
    ids = sorted({int(k.removeprefix("delivery-")) for k in form if k.startswith("delivery-") and k[9:].isdigit() and 0 < len(k[9:]) < 19})
    if form.get("all_matching") == "yes":
        flt, errors = _filter(runtime, signed, given)
        return flt, [], given, errors
    if not ids:
        return None, [], given, [{"field": "parked", "text": "Tick at least one delivery, or all that match the filter"}]
    return None, ids, given, []


def _outcome(runtime: Runtime, signed: Signed, flt: ParkedFilter | None, ids: list[int], dry_run: bool) -> dict[str, Any]:
    """What a bulk replay did (or, dry, would do): replayed, each with where it goes, and those it
    could not, each with why."""
    actor = f"staff:{signed.staff.id}"
    chosen = flt if flt is not None else ParkedFilter(ids=tuple(ids), tenant=signed.scope)
    # every delivery the selection names, in any state, to say why one is not replayed
    named = find_parked(runtime.engine, ParkedFilter(**{**chosen.__dict__, "states": ("parked", "retrying", "pending", "delivered")})) \
        if flt is None else find_parked(runtime.engine, chosen)
    done = replay(runtime.engine, ParkedFilter(**{**chosen.__dict__, "states": ("parked",)}), actor, dry_run=dry_run)
    erased = set(erased_among(runtime.engine, ParkedFilter(**{**chosen.__dict__, "states": ("parked",)})))
    replayed_ids = {d["delivery_id"] for d in done}
    refused: list[dict[str, Any]] = []
    for row in named:
        if row["delivery_id"] in replayed_ids:
            continue
        if row["delivery_id"] in erased:
            why = "its submission was erased at the resident's request: nothing of it is sent again"
        elif row["state"] == "retrying":
            why = "it is failing but still retrying: only a parked delivery is replayed"
        elif row["state"] == "parked":
            why = "it was replayed or changed by someone else meanwhile"
        else:
            why = f"it is {row['state']}, not parked"
        refused.append({**row, "why": why})
    seen = {row["delivery_id"] for row in named}
    refused += [{"delivery_id": i, "reference": None, "connector": None, "why": "there is no such delivery for you"} for i in ids if i not in seen]
    for item in done:
        item["destination"] = _destination(runtime, item["connector"])
    return {"dry_run": dry_run, "replayed": done, "refused": refused}


def _destination(runtime: Runtime, name: str) -> str:
    try:
        return runtime.connector(name).describe()
    except (ConfigError, KeyError) as error:
        return f"{name} (not configured now: {error})"


@router.post("/deliveries/replay")
async def bulk_replay(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The ticked deliveries, or all that match the filter: a dry run says which would be replayed
    and where to, changing nothing; a replay re-queues them (each audited) and says which could not be."""
    signed.require("operator")
    dry_run = signed.form.get("action") != "replay"
    flt, ids, given, errors = _selection(runtime, signed)
    if errors:
        shown, _ = _filter(runtime, signed, given)
        rows = await run_in_threadpool(find_parked, runtime.engine, ParkedFilter(**{**shown.__dict__, "limit": SHOWN})) if shown else []
        return signed.page(request, "deliveries_list.html", status=400, rows=rows, more=False, errors=errors, given=given,
                           connectors=_connectors(runtime, signed), forms=runtime.forms.ids(), states=list(STATES))
    outcome = await run_in_threadpool(_outcome, runtime, signed, flt, ids, dry_run)
    if outcome["replayed"] and not dry_run:
        _wake(request)
    return signed.page(request, "deliveries_bulk.html", outcome=outcome, given=given, ids=ids, all_matching=flt is not None)


# -- edit then replay


async def _target(runtime: Runtime, signed: Signed, delivery_id: int) -> Any:
    """The delivery for an operator to correct: 404 for another council's (before any 403)."""
    found = await run_in_threadpool(correction.find, runtime, delivery_id, signed.scope)
    if found is None:
        raise ConsoleError(404, "Delivery not found", f"There is no delivery {delivery_id} for you to correct.")
    signed.require("operator")
    try:
        correction.correctable(found)
    except correction.NotCorrectable as error:
        raise ConsoleError(409, "This delivery cannot be corrected", error.why) from None
    return found


def _fields(runtime: Runtime, found: Any, shown: Any) -> list[dict[str, Any]]:
    form = runtime.forms.get(found.form_id, found.form_version)
    return [
        {"id": f"answer-{i}", "name": "answer:" + correction.pointer(parts), "pointer": correction.pointer(parts),
         "label": correction.label(form, parts), "value": correction.as_text(value), "personal": correction.personal(form, parts),
         "boolean": isinstance(value, bool), "long": isinstance(value, str) and (len(value) > 80 or "\n" in value)}
        for i, (parts, value) in enumerate(correction.leaves(shown))
    ]


def _linked(errors: list[dict[str, str]], fields: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The service's problems, each linked to the input it is about (the nearest one)."""
    linked = []
    for error in errors:
        where = error["pointer"]
        if where == "/reason":
            field = "reason"
        else:
            near = next((f for f in fields if f["pointer"] == where), None) or next(
                (f for f in fields if f["pointer"].startswith(where + "/")), None) or (fields[0] if fields else None)
            field = near["id"] if near else "reason"
        linked.append({"field": field, "text": error["detail"], "pointer": where})
    return linked


def _edit_page(request: Request, signed: Signed, runtime: Runtime, found: Any, shown: Any, reason: str,
               errors: list[dict[str, str]], status: int = 200) -> Response:
    fields = _fields(runtime, found, shown)
    linked = _linked(errors, fields)
    for f in fields:
        f["error"] = next((e["text"] for e in linked if e["field"] == f["id"]), None)
    reason_error = next((e["text"] for e in linked if e["field"] == "reason"), None)
    return signed.page(request, "deliveries_edit.html", status=status, found=found, fields=fields, reason=reason,
                       errors=linked, reason_error=reason_error)


@router.get("/deliveries/{delivery_id}/edit")
async def edit(request: Request, delivery_id: DeliveryId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The answers the delivery would send (the newest correction's, else the submission's) as
    inputs, and a reason to give. Shows personal data: audited as a view."""
    found = await _target(runtime, signed, delivery_id)
    try:
        _, current = correction.answers(runtime, found)
    except correction.NotCorrectable as error:
        raise ConsoleError(409, "This delivery cannot be corrected", error.why) from None
    await run_in_threadpool(audit.record, runtime.engine, f"staff:{signed.staff.id}", found.tenant, "submission.view", found.reference,
                            {"form": found.form_id, "via": "correction", "delivery": found.delivery_id})
    return _edit_page(request, signed, runtime, found, current, "", [])


def _posted_answers(signed: Signed, current: Any) -> Any:
    """The answers as posted: the inputs of the edit page, or the preview's carried JSON."""
    if "answers" in signed.form:
        try:
            return json.loads(signed.form["answers"])
        except ValueError:
            raise ConsoleError(400, "This form cannot be read", "Start the correction again from the delivery's edit page.") from None
    typed_in = {k.removeprefix("answer:"): v for k, v in signed.form.items() if k.startswith("answer:")}
    return correction.edited(current, typed_in)


@router.post("/deliveries/{delivery_id}/edit")
async def preview(request: Request, delivery_id: DeliveryId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The dry run of a correction: the field-level diff and the exact body the connector will
    send, or the edit page again naming every field that is wrong. Stores nothing."""
    found = await _target(runtime, signed, delivery_id)
    _, current = correction.answers(runtime, found)
    answers = _posted_answers(signed, current)
    reason = signed.form.get("reason", "")
    if signed.form.get("step") == "change":
        return _edit_page(request, signed, runtime, found, answers, reason, [])
    checked = await run_in_threadpool(correction.check, runtime, found, answers, reason)
    if checked.errors:
        return _edit_page(request, signed, runtime, found, answers, reason, checked.errors, status=400)
    return signed.page(request, "deliveries_preview.html", found=found, checked=checked, reason=reason,
                       answers=json.dumps(answers, ensure_ascii=False))


@router.post("/deliveries/{delivery_id}/corrections")
async def correct(request: Request, delivery_id: DeliveryId, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Confirms a correction: checked again, stored sealed, audited with who, why and what
    changed, and the delivery replayed with the corrected answers."""
    found = await _target(runtime, signed, delivery_id)
    _, current = correction.answers(runtime, found)
    answers = _posted_answers(signed, current)
    reason = signed.form.get("reason", "")
    try:
        checked, done = await run_in_threadpool(correction.confirm, runtime, found, answers, reason, f"staff:{signed.staff.id}")
    except correction.NotCorrectable as error:
        raise ConsoleError(409, "This delivery cannot be corrected", error.why) from None
    if done is None:
        return _edit_page(request, signed, runtime, found, answers, reason, checked.errors, status=400)
    _wake(request)
    return signed.redirect(f"{PREFIX}/submissions/{found.reference}?replayed={delivery_id}")
