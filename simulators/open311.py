"""A runnable fake council Open311 GeoReport v2 endpoint, as FixMyStreet and council CRMs expose one.

Service list and definitions, form-encoded POST requests.json (checked like a real server), GET requests
(one, or many by comma-delimited service_request_id), and a control route that moves a request's status.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from simulators.control import (
    DemoServer,
    FailurePlan,
    FailureSwitch,
    add_control_routes,
)

PREFIX = "/open311/v2"
JURISDICTION = "eastmoor.example.org"
WASTE_TYPES = {
    "household_bags": "Household bags", "furniture": "Furniture", "white_goods": "White goods",
    "building_rubble": "Building rubble", "garden_waste": "Garden waste", "tyres": "Tyres",
    "asbestos": "Asbestos", "other": "Other",
}
SIZES = {"single_item": "Single item", "car_boot": "Car boot load", "small_van": "Small van load", "transit_van": "Transit van load", "tipper_lorry": "Tipper lorry load"}


def _attribute(code: str, datatype: str, required: bool, description: str, order: int, values: dict[str, str] | None = None) -> dict[str, Any]:
    listed = {"values": [{"key": k, "name": n} for k, n in values.items()]} if values else {}
    return {"variable": True, "code": code, "datatype": datatype, "required": required,
            "datatype_description": None, "order": order, "description": description, **listed}


SERVICES: list[dict[str, Any]] = [
    {"service_code": "FLYTIP", "service_name": "Fly-tipping", "description": "Rubbish dumped on public land",
     "metadata": True, "type": "realtime", "keywords": "rubbish, dumping, fly tipping", "group": "Street cleansing"},
    {"service_code": "GRAFFITI", "service_name": "Graffiti", "description": "Graffiti on public property",
     "metadata": False, "type": "batch", "keywords": "graffiti, vandalism", "group": "Street cleansing"},
    {"service_code": "DOGFOUL", "service_name": "Dog fouling", "description": "Dog mess on a pavement or in a park",
     "metadata": False, "type": "realtime", "keywords": "dog, mess", "group": "Street cleansing"},
]
DEFINITIONS: dict[str, list[dict[str, Any]]] = {
    "FLYTIP": [
        _attribute("waste_type", "multivaluelist", True, "What has been dumped?", 1, WASTE_TYPES),
        _attribute("size", "singlevaluelist", True, "How much is there?", 2, SIZES),
        _attribute("seen_at", "datetime", False, "When was it seen?", 3),
        # FixMyStreet sends its own report id the same way (fixmystreet_id): the sender's reference
        _attribute("hub_reference", "string", False, "The sending system's reference, to spot repeats", 4),
    ],
    "GRAFFITI": [],
    "DOGFOUL": [],
}
LOCATION_FIELDS = ("lat", "long", "address_string", "address_id")


@dataclass
class ServiceRequest:
    service_request_id: str
    service_code: str
    fields: dict[str, str]
    attributes: dict[str, list[str]]
    requested_datetime: str
    token: str | None = None
    status: str = "open"
    status_notes: str | None = None
    updated_datetime: str = ""
    received_count: int = 1

    def as_open311(self) -> dict[str, Any]:
        """The request as GET requests/{id}.json shows it (georeport-v2-schemas/request.json)."""
        service = next(s for s in SERVICES if s["service_code"] == self.service_code)
        lat, long = self.fields.get("lat"), self.fields.get("long")
        return {
            "service_request_id": self.service_request_id, "status": self.status, "status_notes": self.status_notes,
            "service_name": service["service_name"], "service_code": self.service_code,
            "description": self.fields.get("description"), "agency_responsible": "Eastmoor District Council, Street Cleansing",
            "service_notice": None, "requested_datetime": self.requested_datetime,
            "updated_datetime": self.updated_datetime or self.requested_datetime, "expected_datetime": None,
            "address": self.fields.get("address_string"), "address_id": self.fields.get("address_id"), "zipcode": None,
            "lat": float(lat) if lat else None, "long": float(long) if long else None, "media_url": self.fields.get("media_url"),
        }


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Open311State:
    """Service requests, tokens and the failure plan, behind one lock."""

    def __init__(self, api_key: str = "open311-demo-key") -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self.failures = FailureSwitch(FailurePlan(count=0))
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: dict[str, ServiceRequest] = {}
            self._by_reference: dict[str, str] = {}  # attribute[hub_reference] -> id
            self._tokens: dict[str, str] = {}
            self._duplicates = self._rejected = 0
        self.failures.reset()  # counts the POSTs

    def arm(self, plan: FailurePlan) -> None:
        self.failures.arm(plan)

    def rejected(self) -> None:
        with self._lock:
            self._rejected += 1

    def create(self, code: str, fields: dict[str, str], attributes: dict[str, list[str]]) -> ServiceRequest:
        """A new request, or the earlier one when hub_reference repeats (a retried delivery)."""
        reference = (attributes.get("hub_reference") or [None])[0]
        with self._lock:
            if reference is not None and reference in self._by_reference:
                found = self._requests[self._by_reference[reference]]
                found.received_count += 1
                self._duplicates += 1
                return found
            batch = next(s for s in SERVICES if s["service_code"] == code)["type"] == "batch"
            request = ServiceRequest(str(100001 + len(self._requests)), code, fields, attributes, _now(),
                                     token=secrets.token_hex(6) if batch else None)
            self._requests[request.service_request_id] = request
            if reference is not None:
                self._by_reference[reference] = request.service_request_id
            if request.token is not None:
                self._tokens[request.token] = request.service_request_id
            return request

    def get(self, request_id: str) -> ServiceRequest | None:
        with self._lock:
            return self._requests.get(request_id)

    def by_token(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def close(self, request_id: str, notes: str) -> bool:
        return self.set_status(request_id, "closed", notes)

    def set_status(self, request_id: str, status: str, notes: str | None) -> bool:
        """What the council's team does in its own system: the next GET shows the new status."""
        with self._lock:
            found = self._requests.get(request_id)
            if found is not None:
                found.status, found.status_notes, found.updated_datetime = status, notes, _now()
            return found is not None

    def find(self, request_ids: list[str], statuses: list[str]) -> list[ServiceRequest]:
        with self._lock:
            chosen = [self._requests[i] for i in request_ids if i in self._requests] if request_ids else list(self._requests.values())
            return [r for r in chosen if not statuses or r.status in statuses]

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**r.as_open311(), "attributes": r.attributes, "fields": r.fields, "token": r.token,
                     "received_count": r.received_count} for r in self._requests.values()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": len(self._requests), "posts": self.failures.requests, "duplicates": self._duplicates, "rejected": self._rejected}


def parse_post(body: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """GeoReport form fields and attributes: attribute[code]=v, and attribute[code][]=v repeated for lists."""
    fields: dict[str, str] = {}
    attributes: dict[str, list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        if key.startswith("attribute[") and "]" in key:
            code = key[len("attribute["):key.index("]")]
            attributes.setdefault(code, []).append(value)
        elif value != "":  # "Optional" in GeoReport: empty is the same as absent
            fields[key] = value
    return fields, attributes


def check_post(state: Open311State, fields: dict[str, str], attributes: dict[str, list[str]]) -> str:
    """The service code of a valid POST; raises Open311Error (403, 404 or 400) as a real endpoint would."""
    if not secrets.compare_digest(fields.get("api_key", "").encode(), state.api_key.encode()):
        raise Open311Error(403, "Invalid api_key received -- can't proceed with create_request.")
    jurisdiction = fields.get("jurisdiction_id")
    if jurisdiction is not None and jurisdiction != JURISDICTION:
        raise Open311Error(404, f"jurisdiction_id {jurisdiction} was not found")
    code = fields.get("service_code")
    if not code:
        raise Open311Error(400, "service_code was not provided")
    if code not in DEFINITIONS:
        raise Open311Error(404, f"service_code {code} was not found")
    if not (("lat" in fields and "long" in fields) or "address_string" in fields or "address_id" in fields):
        raise Open311Error(400, "A full location parameter must be submitted: lat and long, address_string or address_id")
    try:
        for name in ("lat", "long"):
            if name in fields:
                float(fields[name])
    except ValueError:
        raise Open311Error(400, "lat and long must be numbers (WGS84)") from None
    if len(fields.get("description", "")) > 4000:
        raise Open311Error(400, "description must be 4,000 characters or fewer")
    for attribute in DEFINITIONS[code]:
        given = [v for v in attributes.get(attribute["code"], []) if v != ""]
        if attribute["required"] and not given:
            raise Open311Error(400, f"attribute[{attribute['code']}] is required: {attribute['description']}")
        allowed = {v["key"] for v in attribute.get("values", [])}
        if allowed and (bad := [v for v in given if v not in allowed]):
            raise Open311Error(400, f"attribute[{attribute['code']}]: {', '.join(bad)} is not one of {', '.join(sorted(allowed))}")
        if attribute["datatype"] == "singlevaluelist" and len(given) > 1:
            raise Open311Error(400, f"attribute[{attribute['code']}] takes one value")
    return code


class StatusChange(BaseModel):
    """GeoReport v2 knows two statuses; `status_notes` says more."""

    status: str = Field(pattern="^(open|closed)$")
    status_notes: str | None = Field(default=None, max_length=4000)


def _errors(status: int, description: str) -> JSONResponse:
    return JSONResponse([{"code": status, "description": description}], status_code=status)


def create_app(state: Open311State | None = None, prefix: str = PREFIX) -> FastAPI:
    council = state if state is not None else Open311State()
    app = FastAPI(title="Council Open311 GeoReport v2 simulator")
    app.state.open311 = council
    api = APIRouter(prefix=prefix)

    @api.get("/services.json")
    async def services() -> list[dict[str, Any]]:
        return SERVICES

    @api.get("/services/{code}.json")
    async def definition(code: str) -> JSONResponse:
        if code not in DEFINITIONS:
            return _errors(404, f"service_code {code} was not found")
        return JSONResponse({"service_code": code, "attributes": DEFINITIONS[code]})

    @api.post("/requests.json")
    async def create(request: Request) -> JSONResponse:
        failure = council.failures.take()
        if failure is not None and failure.mode == "status":
            return _errors(failure.status, f"Simulated failure ({failure.status})")
        if failure is not None and failure.mode == "timeout":
            await asyncio.sleep(failure.seconds)
            return _errors(504, "Simulated timeout")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            council.rejected()
            return _errors(400, "Send the service request as application/x-www-form-urlencoded")
        fields, attributes = parse_post((await request.body()).decode("utf-8", errors="replace"))
        try:
            code = check_post(council, fields, attributes)
        except Open311Error as exc:
            council.rejected()
            return _errors(exc.status, exc.description)
        created = council.create(code, {k: v for k, v in fields.items() if k != "api_key"}, attributes)
        reply: dict[str, Any] = {"token": created.token} if created.token else {"service_request_id": created.service_request_id}
        if code == "FLYTIP":  # swagger's RequestResponse has no nulls: a field is sent or left out
            reply["service_notice"] = "We aim to clear fly-tipping within 5 working days."
        return JSONResponse([reply])

    @api.get("/requests.json")
    async def many(service_request_id: str = "", status: str = "", jurisdiction_id: str | None = None) -> JSONResponse:
        if jurisdiction_id is not None and jurisdiction_id != JURISDICTION:
            return _errors(404, f"jurisdiction_id {jurisdiction_id} was not found")
        ids = [i.strip() for i in service_request_id.split(",") if i.strip()]
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        return JSONResponse([found.as_open311() for found in council.find(ids, wanted)][:1000])

    @api.get("/requests/{request_id}.json")
    async def one(request_id: str) -> JSONResponse:
        found = council.get(request_id)
        if found is None:
            return _errors(404, f"service_request_id {request_id} was not found")
        return JSONResponse([found.as_open311()])

    @api.get("/tokens/{token}.json")
    async def token(token: str) -> JSONResponse:
        request_id = council.by_token(token)
        if request_id is None:
            return _errors(404, f"token {token} was not found")
        return JSONResponse([{"service_request_id": request_id, "token": token}])

    app.include_router(api)

    @app.post("/_control/close/{request_id}")
    async def close(request_id: str, notes: str = "Cleared by the street cleansing team.") -> JSONResponse:
        return JSONResponse({"closed": council.close(request_id, notes)})

    @app.post("/_control/requests/{request_id}/status")
    async def change_status(request_id: str, change: StatusChange) -> JSONResponse:
        changed = council.set_status(request_id, change.status, change.status_notes)
        return JSONResponse({"changed": changed}, status_code=200 if changed else 404)

    add_control_routes(app, FailurePlan, council.arm, council.stats, council.reset, {"requests": council.requests})

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # only the runnable entry point needs a server

    parser = argparse.ArgumentParser(prog="python -m simulators.open311", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8104)
    parser.add_argument("--api-key", default="open311-demo-key")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(Open311State(api_key=args.api_key)), host=args.host, port=args.port, log_level="warning")


def _summary(state: Open311State) -> str:
    stats = state.stats()
    return f"{stats['requests']} service request(s) from {stats['posts']} POST(s), {stats['duplicates']} duplicate(s) absorbed, {stats['rejected']} rejected"


def demo(env: dict[str, str]) -> list[DemoServer]:
    """The council's street-cleansing team, reached over Open311 (fly-tipping reports)."""
    key = env.setdefault("STREET_CLEANSING_OPEN311_API_KEY", secrets.token_urlsafe(16))
    state = Open311State(api_key=key)
    office = DemoServer("street-cleansing", create_app(state), partial(_summary, state), path=PREFIX)
    env["STREET_CLEANSING_OPEN311_URL"] = office.url
    return [office]


if __name__ == "__main__":
    main()
