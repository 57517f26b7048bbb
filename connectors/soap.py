"""SOAP connector over zeep: calls one WSDL operation with the mapped record as its arguments and
reads the back office's reference from the reply. The WSDL is loaded offline (connectors.soap_loader).
With `status_poll`, another operation of the same service is asked for each record's status.

Faults: a server fault (soap:Server, SOAP 1.2 Receiver), timeouts, connection errors and HTTP 5xx
are retried; a client fault (soap:Client, Sender), HTTP 4xx and a record that does not fit the
operation's types park at once. No SOAP body is ever logged or put into a reason.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import jmespath
import zeep.exceptions
from pydantic import Field, field_validator
from zeep.helpers import serialize_object
from zeep.wsdl.utils import etree_to_string
from zeep.wsse.username import UsernameToken

from connectors import http
from connectors.base import (
    HIDDEN,
    BasicAuth,
    Connector,
    ConnectorOptions,
    DeliveryContext,
    Health,
    Outcome,
    Preview,
    Secrets,
    StatusReport,
)
from connectors.soap_loader import HttpStatus, argument_lines, load_client, record_problems
from hub.errors import ConfigError, DeliveryError, PermanentError, TransientError


class UsernameTokenAuth(ConnectorOptions):
    """WS-Security UsernameToken (PasswordText) in the SOAP header, as WCF services often want."""

    type: Literal["username_token"]
    username: str
    password_env: str


_DOTTED = r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$"


class StatusPoll(ConnectorOptions):
    """How to ask the back office what became of one record: an operation of the same WSDL that
    takes the reference it gave on delivery (Bartec: ServiceRequests_Get with its ServiceCode)."""

    operation: str
    reference_argument: str = Field(pattern=_DOTTED)
    arguments: dict[str, Any] = Field(default_factory=dict)  # fixed arguments sent every time
    # JMESPath over the reply (serialize_object of the result), like reference_path
    status_path: str
    message_path: str | None = None
    occurred_at_path: str | None = None
    # the zone of times the back office writes without an offset (Bartec writes local time)
    naive_times_in: str = "Europe/London"

    @field_validator("status_path", "message_path", "occurred_at_path")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            jmespath.compile(value)
        return value

    @field_validator("naive_times_in")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone") from None
        return value


class SoapOptions(ConnectorOptions):
    wsdl: str = Field(min_length=1)  # a file (relative to the project root) or an http(s) URL
    service: str | None = None  # default: the WSDL's first service, and its first port
    port: str | None = None
    operation: str
    endpoint: str | None = Field(default=None, pattern=r"^https?://")  # overrides soap:address
    # import location (a full URL, or how it ends, like "?xsd=xsd0") -> local file, relative to the WSDL
    xsd_locations: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    load_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    auth: BasicAuth | UsernameTokenAuth | None = Field(default=None, discriminator="type")
    # JMESPath over the reply (zeep.helpers.serialize_object of the operation's result)
    reference_path: str | None = None
    success_when: str | None = None  # must be truthy for a reply to count as accepted
    error_path: str | None = None  # the back office's own error message, for the reason
    # dotted path in the arguments that receives the idempotency key, e.g. ExternalReference
    idempotency_field: str | None = Field(default=None, pattern=_DOTTED)
    check_url: str | None = Field(default=None, pattern=r"^https?://")  # default: <endpoint>?wsdl
    status_poll: StatusPoll | None = None

    @field_validator("reference_path", "success_when", "error_path")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            jmespath.compile(value)
        return value


def classify_fault(name: str, fault: zeep.exceptions.Fault, status: int | None) -> DeliveryError:
    """Server and Receiver faults (and WCF's InternalServiceFault) may pass; any other code is the
    back office refusing this record. Only the fault string is shown, never the detail."""
    code = str(fault.code or "")
    local = code.rpartition(":")[2].split(".")[0]
    message = " ".join(str(fault.message or "").split())[:300] or "no fault string"
    if not code:  # zeep found no Fault element: judge by the HTTP status alone
        error = TransientError if (status or 0) >= 500 else PermanentError
        return error(f"{name} answered HTTP {status} without a SOAP reply")
    if local in ("Server", "Receiver", "InternalServiceFault"):
        return TransientError(f"{name} answered with a server fault ({code}): {message}")
    return PermanentError(f"{name} refused the record with a fault ({code}): {message}")


def _when(value: Any, zone: ZoneInfo) -> datetime | None:
    """A time from a reply (zeep gives datetimes for xs:dateTime, strings otherwise) as UTC."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)


def _set_path(record: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    node = record
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value


class SoapConnector(Connector):
    options_model = SoapOptions
    options: SoapOptions

    def __init__(self, name: str, options: SoapOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._client, self._transport = load_client(
            options.wsdl, options.xsd_locations, options.load_timeout_seconds, options.timeout_seconds
        )
        self._service, self._port = self._pick_port()
        self._binding = self._port.binding
        operations = self._binding._operations
        if options.operation not in operations:
            raise ConfigError(
                f"connector {name!r}: operation {options.operation!r} is not in {options.wsdl} "
                f"(operations: {', '.join(operations)})"
            )
        self._operation = operations[options.operation]
        poll = options.status_poll
        if poll is not None and poll.operation not in operations:
            raise ConfigError(
                f"connector {name!r}: status_poll operation {poll.operation!r} is not in {options.wsdl} "
                f"(operations: {', '.join(operations)})"
            )
        self.address: str = options.endpoint or self._port.binding_options["address"]
        self._proxy = self._client.create_service(str(self._binding.name), self.address)  # type: ignore[no-untyped-call]
        self._reference = jmespath.compile(options.reference_path) if options.reference_path else None
        self._success = jmespath.compile(options.success_when) if options.success_when else None
        self._error = jmespath.compile(options.error_path) if options.error_path else None
        self._auth_lock = threading.Lock()
        self._auth_ready = False

    def _pick_port(self) -> tuple[Any, Any]:
        services = self._client.wsdl.services
        if not services:
            raise ConfigError(f"{self.options.wsdl}: the WSDL has no service")
        wanted = self.options.service or next(iter(services))
        if wanted not in services:
            raise ConfigError(f"connector {self.name!r}: no service {wanted!r} in {self.options.wsdl} (services: {', '.join(services)})")
        service = services[wanted]
        port_name = self.options.port or next(iter(service.ports))
        if port_name not in service.ports:
            raise ConfigError(f"connector {self.name!r}: no port {port_name!r} in service {wanted!r} (ports: {', '.join(service.ports)})")
        return service, service.ports[port_name]

    def _ensure_auth(self) -> None:
        """Credentials are read at the first send, so `hub config check` needs none of them."""
        auth = self.options.auth
        if auth is None or self._auth_ready:
            return
        with self._auth_lock:
            if self._auth_ready:
                return
            password = self.secrets.env(auth.password_env)
            if isinstance(auth, BasicAuth):
                self._transport.auth = httpx.BasicAuth(auth.username, password)
            else:
                self._client.wsse = UsernameToken(auth.username, password)  # type: ignore[no-untyped-call]
            self._auth_ready = True

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        self.refuse_files(record)  # files go by e-mail or REST only: never dropped silently
        arguments = copy.deepcopy(dict(record))
        if self.options.idempotency_field:
            _set_path(arguments, self.options.idempotency_field, context.idempotency_key)
        self._ensure_auth()
        result = self._call(arguments)
        body = serialize_object(result, dict)  # type: ignore[no-untyped-call]
        if self._success is not None and not self._success.search(body):
            said = self._error.search(body) if self._error is not None else None
            raise PermanentError(f"{self.name} refused the record: {str(said)[:300] if said else 'it reported a failure'}")
        reference = self._reference.search(body) if self._reference is not None else None
        return Outcome(external_reference=str(reference) if reference not in (None, "") else None)

    @property
    def can_poll_status(self) -> bool:
        return self.options.status_poll is not None

    def poll_status(self, external_references: list[str]) -> list[StatusReport]:
        """One call of the status operation per record (Bartec's ServiceRequests_Get takes one
        ServiceCode); a record the reply shows no status for is left out."""
        poll = self.options.status_poll
        if poll is None:
            return super().poll_status(external_references)
        self._ensure_auth()
        status_path, zone = jmespath.compile(poll.status_path), ZoneInfo(poll.naive_times_in)
        message_path = jmespath.compile(poll.message_path) if poll.message_path else None
        time_path = jmespath.compile(poll.occurred_at_path) if poll.occurred_at_path else None
        reports: list[StatusReport] = []
        for reference in external_references:
            arguments = copy.deepcopy(poll.arguments)
            _set_path(arguments, poll.reference_argument, reference)
            body = serialize_object(self._call(arguments, poll.operation), dict)  # type: ignore[no-untyped-call]
            status = status_path.search(body)
            if status in (None, "") or isinstance(status, (dict, list)):
                continue
            message = message_path.search(body) if message_path is not None else None
            occurred = time_path.search(body) if time_path is not None else None
            reports.append(StatusReport(
                reference, str(status).strip(), str(message) if message not in (None, "") else None, _when(occurred, zone)
            ))
        return reports

    def lookup(self, operation: str, arguments: dict[str, Any]) -> Any:
        """Another operation of the same service, used as a read (Bartec's Premises_Get)."""
        if operation not in self._binding._operations:
            raise PermanentError(f"{self.name}: operation {operation!r} is not in its WSDL")
        self._ensure_auth()
        return serialize_object(self._call(copy.deepcopy(arguments), operation), dict)  # type: ignore[no-untyped-call]

    def _call(self, arguments: dict[str, Any], operation: str | None = None) -> Any:
        name, timeout = self.name, self.options.timeout_seconds
        operation = operation or self.options.operation
        try:
            return self._proxy[operation](**arguments)
        except zeep.exceptions.Fault as fault:
            raise classify_fault(name, fault, self._transport.last_status) from None
        except HttpStatus as exc:
            if exc.status >= 500 or exc.status in (408, 425, 429):
                raise TransientError(f"{name} answered HTTP {exc.status}") from None
            raise PermanentError(f"{name} refused the request: HTTP {exc.status}") from None
        except httpx.TimeoutException:
            raise TransientError(f"no reply from {name} within {timeout:g} s") from None
        except httpx.TransportError as exc:
            raise TransientError(f"could not reach {name}: {type(exc).__name__}") from None
        except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden):
            raise PermanentError(f"{name} sent a reply with a DTD or entities, which is refused as unsafe") from None
        except zeep.exceptions.TransportError as exc:
            if (exc.status_code or 0) >= 500:
                raise TransientError(f"{name} answered HTTP {exc.status_code} without a SOAP reply") from None
            raise PermanentError(f"{name} answered HTTP {exc.status_code} without a SOAP reply") from None
        except (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError, zeep.exceptions.UnexpectedElementError):
            # the back office may have acted on the record: a person must look before it is sent again
            raise PermanentError(f"{name} sent a reply that does not match its WSDL") from None
        except (zeep.exceptions.ValidationError, TypeError, ValueError) as exc:
            problem = str(exc).split(". Signature:")[0][:300]
            raise PermanentError(f"the record does not fit {operation}: {problem}") from None

    def validate_record(self, record: Mapping[str, Any]) -> list[str]:
        arguments = copy.deepcopy(dict(record))
        if self.options.idempotency_field:
            _set_path(arguments, self.options.idempotency_field, "HUB-CHECK/idempotency-key")
        problems = record_problems(self._operation.input.body.type, arguments, "")
        if problems:
            return [f"{self.options.operation}: {problem}" for problem in problems]
        try:
            self._client.create_message(self._proxy, self.options.operation, **arguments)  # type: ignore[no-untyped-call]
        except (zeep.exceptions.Error, TypeError, ValueError) as exc:
            return [f"{self.options.operation}: {str(exc).split('. Signature:')[0][:300]}"]
        return []

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        """The envelope zeep would post, built by the binding `send` goes through (its plug-ins
        and WS-Security too, when a send has set it up), with every password and nonce hidden."""
        arguments = copy.deepcopy(dict(record))
        if self.options.idempotency_field:
            _set_path(arguments, self.options.idempotency_field, context.idempotency_key)
        try:
            envelope, headers = self._binding._create(self.options.operation, (), arguments, client=self._client)
        except (zeep.exceptions.Error, TypeError, ValueError) as exc:
            raise PermanentError(f"the record does not fit {self.options.operation}: {str(exc).split('. Signature:')[0][:300]}") from None
        for element in envelope.iter():
            if isinstance(element.tag, str) and element.tag.rpartition("}")[2] in ("Password", "Nonce"):
                element.text = HIDDEN
        shown = [(k, str(v)) for k, v in dict(headers).items()]
        if isinstance(self.options.auth, BasicAuth):
            shown.append(("Authorization", f"Basic {HIDDEN}"))
        body = etree_to_string(envelope).decode("utf-8")  # type: ignore[no-untyped-call]
        note = "WS-Security adds a fresh timestamp and nonce at each send" if self.options.auth and not isinstance(self.options.auth, BasicAuth) else ""
        return Preview("SOAP", f"{self.options.operation} at {self.address}", tuple(shown), "text/xml; charset=utf-8", body, note)

    def check(self) -> Health:
        url = self.options.check_url or f"{self.address}?wsdl"
        try:
            self._ensure_auth()
            status = self._transport.probe(url)
        except httpx.HTTPError as exc:
            return Health(False, f"cannot reach {url}: {type(exc).__name__}")
        except Exception as exc:  # a missing credential is reported, not raised
            return Health(False, str(exc))
        return http.health(status, unhealthy_from=400, where=f" from {url}")

    def describe(self) -> str:
        auth = self.options.auth.type if self.options.auth else "none"
        lines = [
            f"{self.name}: SOAP {self.options.operation} on service {self._service.name}, port {self._port.name}",
            f"  endpoint: {self.address} (auth: {auth}, timeout {self.options.timeout_seconds:g} s)",
            f"  wsdl: {self.options.wsdl}",
            "  operations (arguments -> result):",
        ]
        for operation in self._binding._operations.values():
            output = operation.output.signature(as_output=True) if operation.output else "nothing"
            lines.append(f"    {operation.name}({operation.input.signature()}) -> {output}")
        lines.append(f"  the mapped record is the arguments of {self.options.operation}:")
        lines.extend(argument_lines(self._operation.input.body.type, indent="  ", depth=1))
        return "\n".join(lines)

    def close(self) -> None:
        self._transport.close()
