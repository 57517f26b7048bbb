"""The console's connectors pages: each connector's circuit, pause, last success and failure, error
rates and waiting deliveries; pause and resume (the admin API's own service, audited there), test
the connection (the connector's `check()`), and preview a mapping: the exact body the connector
would send for a sample, made by the worker's own mapping and the connector's own code, nothing sent.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from connectors.base import DeliveryContext, Preview
from hub.api.routes.admin import _switch, _visible
from hub.config.files import ConnectorConfig
from hub.console.session import RuntimeDep, Signed, SignedDep, router
from hub.console.web import PREFIX, ConsoleError
from hub.delivery.attempt import idempotency_key, mapping_meta
from hub.errors import ConfigError, DeliveryError, RequestError
from hub.logs import scrubbed
from hub.runtime import Runtime
from hub.store import circuits
from hub.store.connector_health import Fared, fared
from hub.store.replay import counts_by_connector

Name = Annotated[str, Path(min_length=1, max_length=64)]
# the reference a preview's record carries: no submission has it (references are PREFIX-…)
PREVIEW_REFERENCE = "PREVIEW-0000000"
SAMPLE_BYTES = 64 * 1024


def _config(runtime: Runtime, signed: Signed, name: str) -> ConnectorConfig:
    """The connector, if this person may see it; another council's is "not found" like a missing one."""
    config = runtime.config.connectors.get(name)
    if config is None or not _visible(signed.staff, config):
        raise ConsoleError(404, "Connector not found", f"There is no connector {name} for you to see.")
    return config


def _when(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment is not None else None


def _rate(found: Fared, window: str) -> str:
    rate = found.rates[window]
    share = rate.share
    return "no attempts" if share is None else f"{share:.0%} ({rate.failed} of {rate.attempts})"


async def _rows(runtime: Runtime, signed: Signed, names: list[str]) -> list[dict[str, Any]]:
    """What the pages show for each connector, from the same services as /v1/admin/connectors."""
    states = await run_in_threadpool(circuits.read_all, runtime.engine)
    counts = await run_in_threadpool(counts_by_connector, runtime.engine, signed.scope)
    health = await run_in_threadpool(fared, runtime.engine, names, datetime.now(UTC), signed.scope)
    rows = []
    for name in names:
        config = runtime.config.connectors[name]
        circuit = states.get(name, circuits.Circuit(name, "closed", 0, None))
        by_state = counts.get(name, {})
        found = health[name]
        rows.append({
            "name": name,
            "type": config.type,
            "tenants": list(config.tenants),
            "circuit": circuit.state.replace("_", "-"),
            "open_until": _when(circuit.opened_until),
            "failures": circuit.failures,
            "paused": circuit.paused_at is not None,
            "paused_at": _when(circuit.paused_at),
            "paused_by": circuit.paused_by,
            "last_success_at": _when(found.last_success_at),
            "last_failure_at": _when(found.last_failure_at),
            # stored scrubbed by the worker; scrubbed again of every credential this process knows
            "last_failure": scrubbed(found.last_failure) if found.last_failure else None,
            "hour": _rate(found, "hour"),
            "day": _rate(found, "day"),
            "waiting": by_state.get("pending", 0) + by_state.get("retrying", 0),
            "parked": by_state.get("parked", 0),
        })
    return rows


@router.get("/connectors")
async def connectors_page(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Every connector this person may see, with its state and how it has fared."""
    signed.require("viewer")
    names = [n for n in runtime.connector_names() if _visible(signed.staff, runtime.config.connectors[n])]
    return signed.page(request, "connectors.html", connectors=await _rows(runtime, signed, names))


def _mappings(runtime: Runtime, signed: Signed, name: str) -> list[str]:
    """The forms with a mapping to this connector that this person's council offers (every one for
    platform staff)."""
    tenant = runtime.config.tenants.get(signed.scope) if signed.scope is not None else None
    if signed.scope is not None and tenant is None:
        return []
    return sorted(form for form, connector in runtime.mappings if connector == name and (tenant is None or tenant.offers(form)))


def _samples(runtime: Runtime, forms: list[str]) -> dict[str, list[str]]:
    """Each form's sample payloads (schemas/<form>/samples/*.json), by file name."""
    found = {}
    for form in forms:
        folder = runtime.settings.schemas_dir / form / "samples"
        found[form] = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    return found


async def _detail(request: Request, runtime: Runtime, signed: Signed, name: str, status: int = 200, **shown: Any) -> Response:
    [row] = await _rows(runtime, signed, [name])
    forms = _mappings(runtime, signed, name)
    given = {"mapping": forms[0] if forms else "", "sample": "", "payload": "", **shown.pop("given", {})}
    return signed.page(request, "connector.html", status=status, connector=row, forms=forms,
                       samples=_samples(runtime, forms), given=given, errors=shown.pop("errors", []), **shown)


@router.get("/connectors/{name}")
async def connector_page(request: Request, name: Name, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """One connector: its state, and (for operators) pause, resume, test and preview."""
    signed.require("viewer")
    _config(runtime, signed, name)
    return await _detail(request, runtime, signed, name)


async def _pause_or_resume(request: Request, name: str, runtime: Runtime, signed: Signed, pause: bool) -> Response:
    _config(runtime, signed, name)
    signed.require("operator")
    try:
        # the admin API's own switch: the same checks (a shared connector needs platform staff), audited
        done = await _switch(circuits.pause if pause else circuits.resume, name, runtime, signed.staff)
    except RequestError as exc:
        raise ConsoleError(exc.status, "You cannot do this", exc.detail) from None
    change = ("paused" if pause else "resumed") if done["changed"] else "unchanged"
    return signed.redirect(f"{PREFIX}/connectors/{name}?done={change}")


@router.post("/connectors/{name}/pause")
async def pause(request: Request, name: Name, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Holds the connector's deliveries back, uncounted, until resumed."""
    return await _pause_or_resume(request, name, runtime, signed, pause=True)


@router.post("/connectors/{name}/resume")
async def resume(request: Request, name: Name, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Lets a paused connector's deliveries flow again."""
    return await _pause_or_resume(request, name, runtime, signed, pause=False)


def _check(runtime: Runtime, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        health = runtime.connector(name).check()
        ok, detail = health.ok, health.detail
    except ConfigError as exc:  # a connector that cannot be built (a missing credential) says why
        ok, detail = False, f"configuration: {exc}"
    except Exception as exc:  # a fault in connector code is a failed check, not a 500
        ok, detail = False, f"the check itself failed: {type(exc).__name__}"
    return {"ok": ok, "detail": scrubbed(detail), "milliseconds": round((time.perf_counter() - started) * 1000)}


@router.post("/connectors/{name}/check")
async def check(request: Request, name: Name, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Tests the connection with the connector's own harmless request; shows the answer and its time."""
    _config(runtime, signed, name)
    signed.require("operator")
    result = await run_in_threadpool(_check, runtime, name)
    return await _detail(request, runtime, signed, name, checked=result)


def _payload(runtime: Runtime, form: str, given: dict[str, str], errors: list[dict[str, str]]) -> Any:
    """The pasted JSON, else the chosen sample; each problem named by its field."""
    if given["payload"].strip():
        try:
            payload = json.loads(given["payload"])
        except json.JSONDecodeError as exc:
            errors.append({"field": "payload", "text": f"Pasted JSON is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"})
            return None
        if not isinstance(payload, dict):
            errors.append({"field": "payload", "text": "Pasted JSON must be an object of the form's answers, in { }"})
            return None
        return payload
    sample = given["sample"]
    if not sample:
        errors.append({"field": "sample", "text": "Choose a sample or paste the form's answers as JSON"})
        return None
    if sample not in _samples(runtime, [form])[form]:
        errors.append({"field": "sample", "text": f"Choose one of the samples of {form}"})
        return None
    path: FilePath = runtime.settings.schemas_dir / form / "samples" / sample
    return json.loads(path.read_text(encoding="utf-8")[:SAMPLE_BYTES])


def _preview(runtime: Runtime, signed: Signed, name: str, config: ConnectorConfig, form: str, payload: Any) -> Preview:
    """The worker's steps up to the send (hub/delivery/attempt.py): mapping, then the connector's request."""
    latest = runtime.forms.get(form)
    version = latest.version if latest is not None else 1
    tenant = signed.scope or (config.tenants[0] if config.tenants and config.tenants[0] != "*" else "preview")
    meta = mapping_meta(PREVIEW_REFERENCE, form, version, datetime.now(UTC), tenant, name)
    context = DeliveryContext(PREVIEW_REFERENCE, name, 0, idempotency_key(PREVIEW_REFERENCE, name), 1, tenant, form)
    record = runtime.mappings[(form, name)].apply(payload, meta)
    return runtime.connector(name).preview(record, context)


@router.post("/connectors/{name}/preview")
async def preview(request: Request, name: Name, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """The exact body the connector would send for a sample or pasted answers; nothing is sent."""
    config = _config(runtime, signed, name)
    signed.require("operator")
    given = {k: signed.form.get(k, "") for k in ("mapping", "sample", "payload")}
    errors: list[dict[str, str]] = []
    forms = _mappings(runtime, signed, name)
    if given["mapping"] not in forms:
        errors.append({"field": "mapping", "text": f"Choose a mapping to {name} from the list"})
        return await _detail(request, runtime, signed, name, status=400, given=given, errors=errors)
    form = given["mapping"]
    payload = _payload(runtime, form, given, errors)
    if errors:
        return await _detail(request, runtime, signed, name, status=400, given=given, errors=errors)
    latest = runtime.forms.get(form)
    problems = latest.errors(payload) if latest is not None else []
    if problems:
        # intake would refuse these answers, so the worker would never map them
        errors.extend({"field": "payload", "text": f"The answers do not fit {form}: {p.pointer or '/'}: {p.message}"} for p in problems[:10])
        return await _detail(request, runtime, signed, name, status=400, given=given, errors=errors)
    try:
        shown = await run_in_threadpool(_preview, runtime, signed, name, config, form, payload)
    except ConfigError as exc:  # the connector cannot be built here (a WSDL that will not load)
        raise ConsoleError(503, "Preview is not available", scrubbed(f"The connector {name} cannot be built: {exc}")) from None
    except DeliveryError as exc:  # a mapping or a record the back office would refuse: park at once
        errors.append({"field": "payload", "text": f"The worker would park this: {scrubbed(exc.reason)}"})
        return await _detail(request, runtime, signed, name, status=400, given=given, errors=errors)
    return await _detail(request, runtime, signed, name, given=given, preview=shown, reference=PREVIEW_REFERENCE)
