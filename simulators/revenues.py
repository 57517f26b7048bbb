"""A runnable fake of Civica Universal Housing's ArrearsAgreementService (WCF, SOAP 1.1), serving
the REAL contract from shared/realworld/ and answering CreateArrearsAgreement and GetArrearsAgreementByRef.

Its SOAP plumbing (SoapEndpoint, SoapState, FailurePlan, serve) is shared with simulators.waste.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field
from zeep.helpers import serialize_object

from connectors.soap_loader import load_client
from hub.settings import REPO_ROOT

CONTRACT = REPO_ROOT.parent / "shared" / "realworld" / "civica-universal-housing-wsdl"
SVC_PATH = "/webservices/ArrearsAgreementService.svc"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
# the key of the UH user field that carries the hub's idempotency key (see the mapping)
IDEMPOTENCY_FIELD = "ExternalRef"


class FailurePlan(BaseModel):
    """What the next `count` SOAP requests do instead of succeeding."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=0)
    mode: Literal["server_fault", "client_fault", "status", "hang"] = "server_fault"
    status: int = Field(default=503, ge=400, le=599)
    seconds: float = Field(default=5.0, ge=0)
    message: str = "Simulated failure"


class SoapState:
    """Counters and the failure plan behind one lock: uvicorn runs beside the hub's threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # summary() and reset() of subclasses call the base under it
        self.plan = FailurePlan(count=0)
        self.requests = self.duplicates = 0

    def arm(self, plan: FailurePlan) -> None:
        with self.lock:
            self.plan = plan

    def next_failure(self) -> FailurePlan | None:
        with self.lock:
            self.requests += 1
            if self.plan.count <= 0:
                return None
            self.plan = self.plan.model_copy(update={"count": self.plan.count - 1})
            return self.plan

    def reset(self) -> None:
        """Forget what arrived; subclasses clear their own records too."""
        with self.lock:
            self.requests = self.duplicates = 0
            self.plan = FailurePlan(count=0)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "duplicates": self.duplicates}


def add_control_routes(app: FastAPI, state: SoapState, listing: str, records: Callable[[], list[Any]]) -> None:
    """`/_control/fail` to fail on command, `/_control/<listing>` and `stats` to see what arrived, `reset`."""

    @app.post("/_control/fail")
    async def fail(plan: FailurePlan) -> FailurePlan:
        state.arm(plan)
        return plan

    @app.get(f"/_control/{listing}")
    async def listed() -> Any:
        with state.lock:
            return jsonable_encoder(records())

    @app.get("/_control/stats")
    async def stats() -> dict[str, Any]:
        return state.summary()

    @app.post("/_control/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"result": "reset"}


def safe_parse(body: bytes) -> Any:
    """No DTD, no entities, no network: a request is data, never instructions to the parser."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    root = etree.fromstring(body, parser)
    if root.getroottree().docinfo.doctype:
        raise ValueError("a DTD is not allowed")
    return root


def fault_response(code: str, message: str, namespaces: dict[str, str] | None = None, status: int = 500) -> Response:
    nsmap = {"s": SOAP11, **(namespaces or {})}
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap=nsmap)
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP11}}}Body"), f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    text = etree.SubElement(fault, "faultstring")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en-GB")
    text.text = message
    return Response(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"), status, media_type="text/xml")


Handler = Callable[[Any], dict[str, Any]]
# the fault a service gives for a SOAPAction it does not know: (code, text with {action}, namespaces)
UnknownAction = tuple[str, str, dict[str, str]]


class SoapEndpoint:
    """Dispatches SOAP 1.1 requests by SOAPAction; zeep reads and writes the messages per the WSDL."""

    def __init__(self, client: Any, state: SoapState, handlers: dict[str, Handler], unknown_action: UnknownAction,
                 authorise: Callable[[Request, Any], Response | None] = lambda request, envelope: None) -> None:
        binding = next(iter(next(iter(client.wsdl.services.values())).ports.values())).binding
        self.operations = {op.soapaction: op for op in binding._operations.values()}
        self.state, self.handlers, self.unknown_action, self.authorise = state, handlers, unknown_action, authorise

    async def __call__(self, request: Request) -> Response:
        failure = self.state.next_failure()
        if failure is not None and failure.mode == "status":
            return Response("<html><body>Service Unavailable</body></html>", failure.status, media_type="text/html")
        if failure is not None and failure.mode in ("server_fault", "client_fault"):
            return fault_response("s:Server" if failure.mode == "server_fault" else "s:Client", failure.message)
        body = await request.body()
        if len(body) > 1024 * 1024:
            return fault_response("s:Client", "The request is larger than this service accepts")
        try:
            envelope = safe_parse(body)
        except (etree.XMLSyntaxError, ValueError) as exc:
            return fault_response("s:Client", f"The request is not acceptable XML: {exc}")
        if envelope.tag != f"{{{SOAP11}}}Envelope":
            return fault_response("s:VersionMismatch", "Only SOAP 1.1 envelopes are accepted")
        refused = self.authorise(request, envelope)
        if refused is not None:
            return refused
        action = request.headers.get("soapaction", "").strip('"')
        operation = self.operations.get(action)
        if operation is None or operation.name not in self.handlers:
            code, text, namespaces = self.unknown_action
            return fault_response(code, text.replace("{action}", action), namespaces)
        try:
            arguments = serialize_object(operation.input.deserialize(envelope), dict)
        except Exception as exc:  # zeep found the body does not match the contract
            return fault_response("s:Client", f"The request does not match the contract: {exc}")
        reply = self.handlers[operation.name](arguments)
        if failure is not None and failure.mode == "hang":
            await asyncio.sleep(failure.seconds)  # the work is done before the reply is late
        content = operation.output.serialize(**reply).content
        return Response(etree.tostring(content, xml_declaration=True, encoding="utf-8"), 200, media_type="text/xml")


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
        url, _, query = result.get("url", "").partition("?xsd=")
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
    add_control_routes(app, revenues, "agreements", lambda: [asdict(a) for a in revenues.agreements.values()])
    return app


def serve(module: str, port: int, build: Callable[[str | None, str | None], FastAPI], argv: list[str] | None) -> None:
    """`python -m simulators.<module> [--port N] [--username U --password P]`."""
    import uvicorn  # only the runnable entry point needs a server

    parser = argparse.ArgumentParser(prog=f"python -m simulators.{module}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--username", default=None, help="require these credentials")
    parser.add_argument("--password", default=None)
    args = parser.parse_args(argv)
    uvicorn.run(build(args.username, args.password), host=args.host, port=args.port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    serve("revenues", 8103, lambda user, password: create_app(RevenuesState(user, password)), argv)


if __name__ == "__main__":
    main()


class DemoSoapOffice:
    """A SOAP simulator started by the demo; `summary()` says what it received, `stop()` stops it."""

    def __init__(self, name: str, app: FastAPI, summary: Callable[[], str]) -> None:
        from hub.serving import ServerThread

        server = ServerThread(app).start()
        self.name, self.url, self.summary, self.stop = name, server.url, summary, server.stop


def demo(env: dict[str, str]) -> list[DemoSoapOffice]:
    """The housing revenues system (rent arrears agreements), with WS-Security credentials."""
    state = RevenuesState("hub", env.setdefault("REVENUES_PASSWORD", secrets.token_urlsafe(16)))

    def summary() -> str:
        s = state.summary()
        return f"{s['agreements']} arrears agreement(s) from {s['requests']} request(s), {s['duplicates']} duplicate(s) absorbed"

    office = DemoSoapOffice("revenues", create_app(state), summary)
    env["REVENUES_URL"] = office.url
    return [office]
