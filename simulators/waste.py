"""A runnable fake of a Bartec Collective waste system (SOAP 1.1): premises by UPRN, service request
types and statuses, ServiceRequest_Create and ServiceRequests_Get (a request's current status),
answering in the shapes of real Bartec replies. `/_control/` moves a request's status on.

No real Bartec WSDL is available; simulators/wsdl/bartec-collective.wsdl is written from real replies.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from connectors.soap_loader import load_client
from simulators.control import DemoServer
from simulators.soap_service import (
    SoapEndpoint,
    SoapState,
    add_soap_control_routes,
    serve,
)

WSDL = Path(__file__).resolve().parent / "wsdl" / "bartec-collective.wsdl"
ASMX_PATH = "/API-R1531/CollectiveAPI.asmx"
CREATE_ERROR = "Error in 'API.pr_ServiceRequest_Create': "
_STAMP = {"AddedBy": "dbo", "DateAdded": "2018-11-12T13:53:01.53"}

# (ID, name, service class ID, class name): street cleansing and waste types as a Bartec council has them
SERVICE_TYPES = [
    (1, "Leaf Removal", 1, "Street Cleansing"),
    (2, "Street Sweeping", 1, "Street Cleansing"),
    (3, "Rubbish", 1, "Street Cleansing"),
    (5, "General", 3, "Offensive Graffiti"),
    (6, "Missed food", 3, "Missed bin"),
    (7, "Bulky collection", 10, "Bulky goods"),
    (8, "GW NEW SUBSCRIPTION", 84, "WASTE"),
    (9, "GW RENEWAL", 84, "WASTE"),
]
STATUSES = ["PENDING", "OPEN", "ASSIGNED", "IN PROGRESS", "CLOSED"]
# extended data each type accepts: field name -> mandatory (every value is a string of at most 50)
EXTENDED_FIELDS: dict[int, dict[str, bool]] = {
    7: {"ITEM_01": True, "ITEM_02": False, "ITEM_03": False, "ITEM_04": False, "ITEM_05": False,
        "COLLECTION_DATE": True, "PAYMENT_REF": True},
    8: {"BINS": True, "START_DATE": True, "PAYMENT_REF": True},
    9: {"BINS": True, "START_DATE": True, "PAYMENT_REF": True},
}
# the demo council's gazetteer: UPRN -> (house, street, locality, town, postcode, ward)
GAZETTEER = {
    "100090215423": ("14", "ORCHARD WAY", "NORTHFIELD", "EASTMOOR", "EM1 4QT", "Northfield"),
    "100090215487": ("3", "KILN LANE", "", "EASTMOOR", "EM2 7HD", "Castle"),
    "100090877012": ("FLAT 2, 41", "HIGH STREET", "OLD TOWN", "EASTMOOR", "EM1 1AB", "Castle"),
    "200004125530": ("THE BARN", "MILL ROAD", "LOWER EASTON", "EASTMOOR", "EM4 9RS", "Easton"),
}


def premises(uprn: str, entry: tuple[str, ...], number: int) -> dict[str, Any]:
    house, street, locality, town, postcode, ward = entry
    return {
        "UPRN": uprn, "USRN": f"{24000000 + number}",
        "Address": {"Address1": "", "Address2": house, "Street": street, "Locality": locality, "Town": town, "PostCode": postcode},
        "UserLabel": "",
        "Ward": {"ID": 2500 + number, "WardCode": f"E0501{number:04d}", "Name": ward, "RecordStamp": _STAMP},
        "Parish": {"ID": 14100 + number, "ParishCode": f"00JA{number:03d}", "Name": ward, "RecordStamp": _STAMP},
        "Location": {"BNG": {"Easting": f"{516000 + number * 37}.5", "Northing": f"{295000 + number * 41}.5"},
                     "Metric": {"Latitude": f"52.54{number:02d}", "Longitude": f"-0.28{number:02d}"}},
        "RecordStamp": _STAMP,
    }


def service_type(type_id: int, name: str, class_id: int, class_name: str) -> dict[str, Any]:
    return {
        "ID": type_id, "Name": name, "Description": name, "AppointmentCount": 1,
        "ServiceClass": {"ID": class_id, "Name": class_name, "Description": class_name, "Category": "General",
                         "ExtendedDataRecordType": None, "Mobile": False, "Private": False, "RecordStamp": None,
                         "ExtendedDataRecordDefinitionID": 0},
        "DefaultCrew": {"ID": 11, "CrewNumber": 2, "WorkGroup": None, "Description": "A Crew", "DefaultSize": 2,
                        "StartTime": "", "EndTime": "", "WorkingMinutes": 60, "NonworkingMinutes": 30, "RecordStamp": None},
        "DefaultLandType": {"ID": 12, "Name": "Household", "RecordStamp": None},
        "DefaultSLA": {"ID": 13, "Name": "SLA - 10 Working Days", "Description": "SLA - 10 Working Days", "Period": "10 days",
                       "NormaliseTime": "", "JeopardyPeriod": "", "WorkingHours": True, "RecordStamp": None},
        "RecordStamp": {"AddedBy": "bartec", "DateAdded": "2019-02-22T16:11:11.953", "Comments": ""},
        "ExtendedDataRecordDefinitionID": type_id if type_id in EXTENDED_FIELDS else 0,
    }


@dataclass
class ServiceRequest:
    service_code: str
    external_reference: str | None
    received_count: int
    request: dict[str, Any]
    id: int = 0
    status: str = "OPEN"

    def as_bartec(self, type_id: int) -> dict[str, Any]:
        """The parts of ServiceRequests_Get's ServiceRequest the hub reads (servicerequests_get_SR1.xml)."""
        sequence = STATUSES.index(self.status)
        return {
            "id": self.id, "ServiceCode": self.service_code, "DateRequested": str(self.request.get("DateRequested") or ""),
            "ServiceStatus": {"ID": 2270 + type_id * 10 + sequence, "Status": self.status, "SequenceNumber": sequence, "ServiceTypeID": type_id},
            "ExternalReference": self.external_reference or "", "RecordStamp": _STAMP,
        }


class StatusChange(BaseModel):
    """What the waste team does in Bartec: the next ServiceRequests_Get shows the new status."""

    status: str


class WasteState(SoapState):
    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.premises = {uprn: premises(uprn, entry, n) for n, (uprn, entry) in enumerate(GAZETTEER.items(), 1)}
        self.types = {row[0]: service_type(*row) for row in SERVICE_TYPES}
        self.requests_made: dict[str, ServiceRequest] = {}  # by service code, in arrival order

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.requests_made.clear()

    def premises_get(self, args: dict[str, Any] | None) -> dict[str, Any]:
        uprn = str((args or {}).get("UPRN") or "")
        found = [self.premises[uprn]] if uprn in self.premises else ([] if uprn else list(self.premises.values()))
        return {"Premises_GetResult": {"Premises": found, "Errors": {"Result": 0, "Message": ""}, "RecordCount": len(found)}}

    def types_get(self, args: Any) -> dict[str, Any]:
        return {"ServiceRequests_Types_GetResult": {"ServiceType": list(self.types.values()), "RecordCount": len(self.types)}}

    def statuses_get(self, args: Any) -> dict[str, Any]:
        statuses = [
            {"ID": 2270 + type_id * 10 + n, "Status": status, "SequenceNumber": n, "ServiceTypeID": type_id,
             "RecordStamp": {"AddedBy": "bartec", "DateAdded": "2019-02-22T16:11:11.953", "Comments": ""}}
            for type_id in self.types for n, status in enumerate(STATUSES)
        ]
        result = {"ServiceStatus": statuses, "Errors": {"Result": 0, "Message": ""}, "RecordCount": len(statuses)}
        return {"ServiceRequests_Statuses_GetResult": result}

    def create(self, args: dict[str, Any]) -> dict[str, Any]:
        problem = self._refusal(args)
        if problem:
            errors = {"Errors": {"Result": 1, "Message": CREATE_ERROR + problem}, "RecordCount": 0}
            return {"ServiceRequest_CreateResult": errors}
        key = args.get("ExternalReference") or None
        with self.lock:
            existing = next((r for r in self.requests_made.values() if key and r.external_reference == key), None)
            if existing is not None:  # Bartec keeps one request per external reference
                existing.received_count += 1
                self.duplicates += 1
                request = existing
            else:
                number = len(self.requests_made) + 51627
                request = self.requests_made[f"SR{number:08d}"] = ServiceRequest(f"SR{number:08d}", key, 1, args, id=number)
        created = {"ServiceRequest_Create": "", "ServiceCode": request.service_code, "RecordCount": 1}
        return {"ServiceRequest_CreateResult": created}

    def requests_get(self, args: dict[str, Any]) -> dict[str, Any]:
        code = str(args.get("ServiceCode") or "")
        with self.lock:
            found = self.requests_made.get(code)
            requests = [found.as_bartec(int(found.request.get("ServiceTypeID") or 0))] if found is not None else []
        result = {"ServiceRequest": requests, "Errors": {"Result": 0, "Message": ""}, "RecordCount": len(requests)}
        return {"ServiceRequests_GetResult": result}

    def set_status(self, service_code: str, status: str) -> bool:
        with self.lock:
            found = self.requests_made.get(service_code)
            if found is not None:
                found.status = status
            return found is not None

    def _refusal(self, args: dict[str, Any]) -> str | None:
        if str(args.get("UPRN")) not in self.premises:
            return "Specified UPRN does not exist"
        type_id = args.get("ServiceTypeID")
        if type_id not in self.types:
            return "Specified service type does not exist"
        fields = ((args.get("extendedData") or {}).get("ServiceRequests_CreateServiceRequests_CreateFields")) or []
        given = {f["FieldName"]: f["FieldValue"] for f in fields}
        allowed = EXTENDED_FIELDS.get(type_id, {})
        for name, value in given.items():
            if name not in allowed:
                return f"Extended data field {name} is not defined for service type {type_id}"
            if len(value or "") > 50:
                return f"Extended data field {name} is longer than 50 characters"
        missing = [name for name, mandatory in allowed.items() if mandatory and not given.get(name)]
        return f"Mandatory extended data field {missing[0]} is missing" if missing else None

    def authorise(self, request: Request, envelope: Any) -> Response | None:
        if self.username is None:
            return None
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if secrets.compare_digest(request.headers.get("authorization", "").encode(), expected.encode()):
            return None
        return Response("Unauthorized", 401, headers={"WWW-Authenticate": 'Basic realm="Collective"'}, media_type="text/plain")

    def request_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(request) for request in self.requests_made.values()]

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"service_requests": len(self.requests_made), **super().summary()}


def create_app(state: WasteState | None = None, wsdl: Path = WSDL) -> FastAPI:
    waste = state if state is not None else WasteState()
    client, _ = load_client(str(wsdl), {}, 10, 10)
    original = next(iter(next(iter(client.wsdl.services.values())).ports.values())).binding_options["address"]
    endpoint = SoapEndpoint(
        client,
        waste,
        {
            "Premises_Get": waste.premises_get,
            "ServiceRequests_Types_Get": waste.types_get,
            "ServiceRequest_Create": waste.create,
            "ServiceRequests_Statuses_Get": waste.statuses_get,
            "ServiceRequests_Get": waste.requests_get,
        },
        # what an ASP.NET (.asmx) web service answers to a SOAPAction it does not know
        ("s:Client", "System.Web.Services.Protocols.SoapException: Server did not recognize the value of HTTP Header SOAPAction: {action}.", {}),
        waste.authorise,
    )
    app = FastAPI(title="Waste simulator (Bartec Collective-like)")
    app.state.waste = waste

    @app.get(ASMX_PATH)
    async def contract_document(request: Request) -> Response:
        if not any(key.lower() == "wsdl" for key in request.query_params):
            return Response("Use ?WSDL", 404, media_type="text/plain")
        own = f"{request.url.scheme}://{request.url.netloc}{ASMX_PATH}"
        return Response(wsdl.read_text(encoding="utf-8").replace(original, own), media_type="text/xml")

    app.add_api_route(ASMX_PATH, endpoint, methods=["POST"])

    @app.post("/_control/service-requests/{service_code}/status")
    async def change_status(service_code: str, change: StatusChange) -> JSONResponse:
        if change.status not in STATUSES:
            return JSONResponse({"detail": f"status must be one of {', '.join(STATUSES)}"}, status_code=422)
        changed = waste.set_status(service_code, change.status)
        return JSONResponse({"changed": changed}, status_code=200 if changed else 404)

    add_soap_control_routes(app, waste, "service-requests", waste.request_list)
    return app


def main(argv: list[str] | None = None) -> None:
    serve("waste", 8104, lambda user, password: create_app(WasteState(user, password)), argv)


if __name__ == "__main__":
    main()


def demo(env: dict[str, str]) -> list[DemoServer]:
    """The waste management system (bulky collections, garden waste subscriptions), with HTTP Basic."""
    state = WasteState("hub", env.setdefault("WASTE_PASSWORD", secrets.token_urlsafe(16)))

    def summary() -> str:
        s = state.summary()
        return f"{s['service_requests']} service request(s) from {s['requests']} request(s), {s['duplicates']} duplicate(s) absorbed"

    office = DemoServer("waste", create_app(state), summary)
    env["WASTE_URL"] = office.url
    return [office]
