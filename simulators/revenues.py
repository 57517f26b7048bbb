"""A runnable fake of Civica Universal Housing's ArrearsAgreementService (WCF, SOAP 1.1), serving
the REAL contract (shipped in standards/) and answering CreateArrearsAgreement and GetArrearsAgreementByRef.

Its SOAP plumbing (SoapEndpoint, SoapState, FailurePlan, serve) is in simulators.soap_service.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from connectors.soap_loader import load_client
from hub.config.bundled import folder
from simulators.control import DemoServer
from simulators.soap_service import (
    SOAP11,
    SoapEndpoint,
    SoapState,
    add_soap_control_routes,
    fault_response,
    safe_parse,
    serve,
)

CONTRACT = folder("standards") / "civica-universal-housing-wsdl"
SVC_PATH = "/webservices/ArrearsAgreementService.svc"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
# the key of the UH user field that carries the hub's idempotency key (see the mapping)
IDEMPOTENCY_FIELD = "ExternalRef"


@dataclass
class Agreement:
    reference: str
    idempotency_key: str | None
    received_count: int
    agreement: dict[str, Any]
    schedule: list[dict[str, Any]]


def xsd_files(contract: Path) -> dict[str, str]:
    """`xsd0` -> file name, read from the Reference.map WCF's client generator wrote beside the WSDL."""
    found: dict[str, str] = {}
    for result in safe_parse((contract / "Reference.map").read_bytes()).iter("DiscoveryClientResult"):
        _, _, query = result.get("url", "").partition("?xsd=")
        if query:
            found[query] = result.get("filename", "")
    return found


class RevenuesState(SoapState):
    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.agreements: dict[str, Agreement] = {}  # by reference, in arrival order

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.agreements.clear()

    def create(self, dto: dict[str, Any]) -> dict[str, Any]:
        info = dict(dto.get("Agreement") or {})
        schedule = list((dto.get("PaymentSchedule") or {}).get("ArrearsScheduledPaymentInfo") or [])
        if not (info.get("TenancyAgreementRef") or "").strip():
            return _failed(1001, "Tenancy agreement reference is required")
        if not schedule:
            return _failed(1002, "At least one scheduled payment is required")
        fields = (info.get("UserFieldList") or {}).get("UserField") or []
        key = next((f.get("Value") for f in fields if f and f.get("Key") == IDEMPOTENCY_FIELD), None)
        with self.lock:
            for existing in self.agreements.values():
                if key is not None and existing.idempotency_key == key:
                    existing.received_count += 1
                    self.duplicates += 1
                    return _succeeded(existing)
            reference = f"ARA{len(self.agreements) + 1:07d}"
            info.update(Reference=reference, ArrearsAgreementStatusCode="ACTIVE")
            payments = [{**payment, "Id": n} for n, payment in enumerate(schedule, start=1)]
            agreement = self.agreements[reference] = Agreement(reference, key, 1, info, payments)
            return _succeeded(agreement)

    def get(self, dto: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            agreement = self.agreements.get(str((dto or {}).get("Reference") or ""))
            return _succeeded(agreement) if agreement else _failed(1004, "No arrears agreement has that reference")

    def authorise(self, request: Request, envelope: Any) -> Response | None:
        if self.username is None:
            return None
        token = envelope.find(f"{{{SOAP11}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        given = (token.findtext(f"{{{WSSE}}}Username"), token.findtext(f"{{{WSSE}}}Password")) if token is not None else None
        if given is not None and secrets.compare_digest(f"{given[0]}\n{given[1]}", f"{self.username}\n{self.password}"):
            return None
        return fault_response("a:InvalidSecurity", "An error occurred when verifying security for the message.", {"a": WSSE})

    def agreement_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(agreement) for agreement in self.agreements.values()]

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"agreements": len(self.agreements), **super().summary()}


def _failed(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "ErrorMessage": message, "Success": False, "Agreement": None}


def _succeeded(agreement: Agreement) -> dict[str, Any]:
    dto = {**agreement.agreement, "PaymentSchedule": {"ArrearsScheduledPaymentDto": agreement.schedule}}
    return {"ErrorCode": 0, "Success": True, "Agreement": dto}


def create_app(state: RevenuesState | None = None, contract: Path = CONTRACT) -> FastAPI:
    revenues = state if state is not None else RevenuesState()
    files = xsd_files(contract)
    client, _ = load_client(str(contract / "ArrearsAgreementService.wsdl"), {f"?xsd={k}": v for k, v in files.items()}, 10, 10)
    original = client.wsdl.services["ArrearsAgreementService"].ports["BasicHttpBinding_IArrearsAgreementService"].binding_options["address"]
    endpoint = SoapEndpoint(
        client,
        revenues,
        {
            "CreateArrearsAgreement": lambda dto: {"CreateArrearsAgreementResult": revenues.create(dto)},
            "GetArrearsAgreementByRef": lambda dto: {"GetArrearsAgreementByRefResult": revenues.get(dto)},
        },
        # WCF's answer to an action it has no method for (BasicHttpBinding: SOAP 1.1, no WS-Addressing)
        (
            "a:ActionNotSupported",
            "The message with Action '{action}' cannot be processed at the receiver, due to a ContractFilter mismatch at the EndpointDispatcher.",
            {"a": "http://schemas.microsoft.com/ws/2005/05/addressing/none"},
        ),
        revenues.authorise,
    )
    app = FastAPI(title="Revenues simulator (Civica UH ArrearsAgreementService)")
    app.state.revenues = revenues

    @app.get(SVC_PATH)
    async def contract_document(request: Request) -> Response:
        """`?wsdl` and `?xsd=xsdN`, with every URL in them pointing back at this server."""
        own = f"{request.url.scheme}://{request.url.netloc}{SVC_PATH}"
        if "wsdl" in request.query_params:
            name = "ArrearsAgreementService.wsdl"
        elif request.query_params.get("xsd") in files:
            name = files[request.query_params["xsd"]]
        else:
            return Response("Use ?wsdl", 404, media_type="text/plain")
        text = (contract / name).read_text(encoding="utf-8").replace(original, own)
        return Response(text, media_type="text/xml")

    app.add_api_route(SVC_PATH, endpoint, methods=["POST"])
    add_soap_control_routes(app, revenues, "agreements", revenues.agreement_list)
    return app


def main(argv: list[str] | None = None) -> None:
    serve("revenues", 8103, lambda user, password: create_app(RevenuesState(user, password)), argv)


if __name__ == "__main__":
    main()


def demo(env: dict[str, str]) -> list[DemoServer]:
    """The housing revenues system (rent arrears agreements), with WS-Security credentials."""
    state = RevenuesState("hub", env.setdefault("REVENUES_PASSWORD", secrets.token_urlsafe(16)))

    def summary() -> str:
        s = state.summary()
        return f"{s['agreements']} arrears agreement(s) from {s['requests']} request(s), {s['duplicates']} duplicate(s) absorbed"

    office = DemoServer("revenues", create_app(state), summary)
    env["REVENUES_URL"] = office.url
    return [office]
