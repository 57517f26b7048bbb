"""The SOAP 1.1 plumbing the SOAP back-office simulators (simulators.revenues, simulators.waste) share:
failure plans, counters, safe parsing, faults, dispatch by SOAPAction through zeep, and the runnable entry.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response
from lxml import etree
from pydantic import Field
from zeep.helpers import serialize_object

from simulators.control import CountedPlan, FailureSwitch, add_control_routes

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


class FailurePlan(CountedPlan):
    """What the next `count` SOAP requests do instead of succeeding."""

    mode: Literal["server_fault", "client_fault", "status", "hang"] = "server_fault"
    status: int = Field(default=503, ge=400, le=599)
    seconds: float = Field(default=5.0, ge=0)
    message: str = "Simulated failure"


class SoapState:
    """Counters and the failure plan behind one lock: uvicorn runs beside the hub's threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # summary() and reset() of subclasses call the base under it
        self.failures = FailureSwitch(FailurePlan(count=0))  # it counts the requests too
        self.duplicates = 0

    def reset(self) -> None:
        """Forget what arrived; subclasses clear their own records too."""
        with self.lock:
            self.duplicates = 0
        self.failures.reset()

    def arm(self, plan: FailurePlan) -> None:
        self.failures.arm(plan)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.failures.requests, "duplicates": self.duplicates}


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
        failure = self.state.failures.take()
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

def add_soap_control_routes(app: FastAPI, state: SoapState, listing: str, records: Callable[[], list[Any]]) -> None:
    """The shared `/_control/` routes, with the SOAP failure plan and `/_control/<listing>` of what arrived."""
    add_control_routes(app, FailurePlan, state.arm, state.summary, state.reset, {listing: records})


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
