"""A runnable fake council CRM speaking Netcall Liberty Create's `case_to_crm` REST API.

The demo and the tests drive it through `/_control/` to inject failures and see what arrived, and
to make it push a signed status update for a case to the hub, as a CRM workflow would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from simulators.control import (
    DemoServer,
    FailurePlan,
    FailureSwitch,
    add_control_routes,
)

CASE_PATH = "/api/REST/case_to_crm/0.1"
FUNCTION = "case_to_crm_create_update_case"


@dataclass
class Case:
    reference: str
    client_unique_identifier: str
    received_count: int
    record: dict[str, Any]


class CrmState:
    """Cases, counters and the failure plan, behind one lock: uvicorn may run beside the hub's threads."""

    def __init__(
        self,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        status_secret: str | None = None,
        hub_url: str = "http://127.0.0.1:8000",
        connector: str = "crm",
    ) -> None:
        self.token, self.basic = token, basic
        # where and how this CRM pushes case updates: the hub's URL, and the secret it signs with
        self.status_secret, self.hub_url, self.connector = status_secret, hub_url, connector
        self._lock = threading.Lock()
        self.failures = FailureSwitch(FailurePlan(count=0))
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._cases: dict[str, Case] = {}  # by client_unique_identifier, in arrival order
            self._duplicates = 0
        self.failures.reset()

    def arm(self, plan: FailurePlan) -> None:
        self.failures.arm(plan)

    def record(self, record: dict[str, Any]) -> Case:
        """Create the case, or return the existing one: Liberty Create dedupes on the identifier."""
        key = record["client_unique_identifier"]
        with self._lock:
            case = self._cases.get(key)
            if case is not None:
                case.received_count += 1
                self._duplicates += 1
                return case
            case = Case(f"CAS-{len(self._cases) + 1:06d}", key, 1, record)
            self._cases[key] = case
            return case

    def case(self, reference: str) -> Case | None:
        with self._lock:
            return next((c for c in self._cases.values() if c.reference == reference), None)

    def cases(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(case) for case in self._cases.values()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"cases": len(self._cases), "requests": self.failures.requests, "duplicates": self._duplicates}

    def authorised(self, header: str | None) -> bool:
        if self.token is None and self.basic is None:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        if self.token is not None and scheme.lower() == "bearer":
            return secrets.compare_digest(credentials.encode(), self.token.encode())
        if self.basic is not None and scheme.lower() == "basic":
            expected = base64.b64encode(":".join(self.basic).encode()).decode()
            return secrets.compare_digest(credentials.encode(), expected.encode())
        return False


class CaseUpdate(BaseModel):
    """A case worker moves a case on; the CRM tells the hub."""

    status: str = Field(min_length=1, max_length=64)
    message: str | None = None
    hub_url: str | None = None  # default: the one the CRM was set up with


def signed_update(secret: str, update: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a status update as the hub wants it signed."""
    body = json.dumps(update).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"Hub-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}


def _error(status: int, description: str, **extra: Any) -> JSONResponse:
    body = {"result": "error", "error_code": status, "error_desc": description, **extra}
    return JSONResponse(body, status_code=status)


def _missing_fields(body: dict[str, Any]) -> list[str]:
    missing = [k for k in ("client_unique_identifier", "function") if not isinstance(body.get(k), str) or not body[k]]
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return [*missing, "data"]
    for i, item in enumerate(data):
        fields = item if isinstance(item, dict) else {}
        missing += [f"data[{i}].{k}" for k in ("source_system", "source_ref") if fields.get(k) in (None, "")]
    return missing


def _accepted(reference: str) -> dict[str, Any]:
    """Liberty Create's reply; LocalGov Drupal reads data[0].data[0].liberty_create_case_reference."""
    inner = {"result": "success", "error_code": 0, "error_desc": "", "data": [{"liberty_create_case_reference": reference}]}
    return {"result": "success", "error_code": 0, "error_desc": "", "data": [inner]}


def create_app(state: CrmState | None = None) -> FastAPI:
    crm = state if state is not None else CrmState()
    app = FastAPI(title="CRM simulator (Liberty Create case_to_crm)")
    app.state.crm = crm

    @app.post(CASE_PATH)
    async def case_to_crm(request: Request) -> JSONResponse:
        authorised = crm.authorised(request.headers.get("authorization"))
        failure = crm.failures.take(spend=authorised)  # refused requests do not use up the plan
        if not authorised:
            return JSONResponse(
                {"result": "error", "error_code": 401, "error_desc": "Not authorised"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer" if crm.token else 'Basic realm="crm"'},
            )
        if failure is not None and failure.mode == "status":
            return _error(failure.status, f"Simulated failure ({failure.status})")
        if failure is not None and failure.mode == "timeout":
            await asyncio.sleep(failure.seconds)  # nothing is recorded: the request was lost in transit
            return _error(504, "Simulated timeout")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "The body is not valid JSON")
        if isinstance(body, dict) and body.keys() == {"payload"} and isinstance(body["payload"], dict):
            body = body["payload"]  # LocalGov Drupal's webform handler wraps the case in "payload"
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object")
        if missing := _missing_fields(body):
            return _error(400, f"Missing required fields: {', '.join(missing)}", missing=missing)
        if body["function"] != FUNCTION:
            return _error(400, f"Unknown function {body['function']!r}; expected {FUNCTION}")
        case = crm.record(body)
        if failure is not None and failure.mode == "hang":
            # The case exists before the reply is late: a worker killed now must not make a second one.
            await asyncio.sleep(failure.seconds)
        return JSONResponse(_accepted(case.reference))

    @app.post("/_control/cases/{case_reference}/status")
    async def push_status(case_reference: str, update: CaseUpdate) -> JSONResponse:
        case = crm.case(case_reference)
        if case is None:
            return JSONResponse({"detail": f"no case {case_reference}"}, status_code=404)
        if crm.status_secret is None:
            return JSONResponse({"detail": "this CRM has no secret to sign status updates with"}, status_code=409)
        occurred = datetime.now(UTC).isoformat()
        body, headers = signed_update(crm.status_secret, {
            "external_reference": case.reference, "status": update.status, "message": update.message, "occurred_at": occurred,
        })
        url = f"{(update.hub_url or crm.hub_url).rstrip('/')}/v1/status-updates/{crm.connector}"
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url, content=body, headers=headers)
        return JSONResponse({"hub_status": answer.status_code, "hub_answer": answer.json()}, status_code=200)

    add_control_routes(app, FailurePlan, crm.arm, crm.stats, crm.reset, {"cases": crm.cases})
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # only the runnable entry point needs a server

    parser = argparse.ArgumentParser(prog="python -m simulators.crm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--token", default=None, help="require Authorization: Bearer <token> on case requests")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(CrmState(token=args.token)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()


def _summary(state: CrmState) -> str:
    stats = state.stats()
    return f"{stats['cases']} case(s) from {stats['requests']} request(s), {stats['duplicates']} duplicate(s) absorbed"


def demo(env: dict[str, str]) -> list[DemoServer]:
    """The council CRM and the garden-waste team's case system (a second instance)."""
    started = []
    for name, url_var, token_var in (("crm", "CRM_URL", "CRM_API_TOKEN"), ("garden-waste", "GARDEN_WASTE_URL", "GARDEN_WASTE_API_TOKEN")):
        token = env.setdefault(token_var, secrets.token_urlsafe(16))
        # the CRM pushes case updates to the hub (config/connectors.yaml: status_updates.secret_env)
        push = env.setdefault("CRM_STATUS_SECRET", secrets.token_urlsafe(24)) if name == "crm" else None
        state = CrmState(token=token, status_secret=push, hub_url=env.get("HUB_PUBLIC_URL", "http://127.0.0.1:8000"))
        office = DemoServer(name, create_app(state), partial(_summary, state))
        env[url_var] = office.url
        started.append(office)
    return started
