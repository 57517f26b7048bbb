"""Loads a WSDL for the SOAP connector offline and safely, and reads the operations it offers:
their argument trees (for `describe`) and whether a record fits one (for `validate_record`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx
import zeep
from zeep.transports import Transport
from zeep.xsd import ComplexType

from connectors import http
from hub.config.bundled import PACKAGE_ROOT, is_standards_uri, standards_path
from hub.errors import ConfigError, OutboundRefused, PermanentError
from hub.outbound.guard import AllowList

# zeep ships py.typed but leaves most functions unannotated: hence the no-untyped-call ignores below

# zeep 4.3.3 applies forbid_external before asking the transport, so it would also block the
# imports that `xsd_locations` maps to local files; SoapTransport is the gate instead and is
# stricter: it refuses every network location except the configured WSDL URL and listed ones.
# forbid_external is switched on once the WSDL is loaded, for whatever a reply might reference.
def safe_settings() -> zeep.Settings:
    return zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False, xml_huge_tree=False)


class UnlistedLocation(Exception):
    """The WSDL refers to a document the configuration does not allow to be read."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class HttpStatus(Exception):
    """The back office answered with an HTTP status that carries no SOAP reply."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


class SoapTransport(Transport):
    """zeep's transport on the hub's one HTTP client (`connectors.http.client`): every request,
    WSDL fetch, call or health probe, goes only to a host the tenants allow and connects only to
    the addresses just checked (so DNS rebinding cannot reach a metadata service); it reads only
    listed documents, never follows a redirect and never logs a SOAP body. zeep's own requests
    session is never made."""

    # a SOAP 1.1 fault comes with 500, a SOAP 1.2 sender fault with 400: both carry XML to read
    _SOAP_STATUSES = frozenset({200, 201, 202, 400, 500})

    def __init__(
        self, wsdl: str, locations: Mapping[str, Path], load_timeout: float, operation_timeout: float, outbound: AllowList | None = None
    ) -> None:
        # what zeep's Transport.__init__ sets, without its requests.Session
        self.cache = None
        self.load_timeout, self.operation_timeout = load_timeout, operation_timeout
        self.logger = logging.getLogger(__name__)
        self._close_session = False
        self.http = http.client(operation_timeout, min(load_timeout, operation_timeout), outbound)
        self.http.headers["User-Agent"] = "council-connector-hub"
        # the connector's HTTP Basic credentials, once read (`SoapConnector._ensure_auth`)
        self.auth: httpx.BasicAuth | None = None
        self._wsdl = wsdl
        self._locations = dict(locations)
        self._folder = None if _is_url(wsdl) else Path(wsdl).resolve().parent
        self._sealed = False
        self._last = threading.local()

    def seal(self) -> None:
        """After the WSDL is loaded nothing more is read, wherever a reply points."""
        self._sealed = True

    def load(self, url: str) -> bytes:
        if self._sealed:
            raise UnlistedLocation(url)
        for key, path in self._locations.items():
            if url == key or url.endswith(key):
                return path.read_bytes()
        if _is_url(url):
            if url != self._wsdl:
                raise UnlistedLocation(url)
            response = self.http.get(url, timeout=self.load_timeout, auth=self.auth or httpx.USE_CLIENT_DEFAULT)
            if response.status_code != 200:
                raise ConfigError(f"{url}: HTTP {response.status_code} when fetching the WSDL")
            return response.content
        path = Path(unquote(urlparse(url).path) if url.startswith("file:") else url).resolve()
        if self._folder is None or not path.is_relative_to(self._folder):
            raise UnlistedLocation(url)
        return path.read_bytes()

    def post(self, address: str, message: Any, headers: dict[str, str]) -> httpx.Response:
        # zeep's own post logs whole envelopes at DEBUG: bodies carry personal data, so not here.
        # zeep reads status_code, headers, content and encoding, which httpx's response has too.
        response = self.http.post(address, content=message, headers=headers, timeout=self.operation_timeout, auth=self.auth or httpx.USE_CLIENT_DEFAULT)
        self._last.status = response.status_code
        if response.is_redirect:
            raise PermanentError(http.redirect_reason(response))
        if response.status_code not in self._SOAP_STATUSES:
            raise HttpStatus(response.status_code)
        return response

    def get(self, address: str, params: Any, headers: dict[str, str]) -> httpx.Response:
        """zeep's HTTP GET binding, on the same client."""
        return self.http.get(address, params=params, headers=headers, timeout=self.operation_timeout, auth=self.auth or httpx.USE_CLIENT_DEFAULT)

    def probe(self, url: str) -> int:
        """The HTTP status a GET of `url` answers (a health check); raises httpx.HTTPError."""
        return self.http.get(url, timeout=self.load_timeout, auth=self.auth or httpx.USE_CLIENT_DEFAULT).status_code

    def close(self) -> None:
        self.http.close()

    @property
    def last_status(self) -> int | None:
        """The HTTP status of this thread's last call, to judge a reply zeep could not read."""
        status: int | None = getattr(self._last, "status", None)
        return status


def resolve_wsdl(location: str) -> str:
    """A URL as it is; `standards:///...` is a contract shipped with the hub; a relative file
    path is taken from the project root (where config/ lives in a checkout)."""
    if _is_url(location):
        return location
    if is_standards_uri(location):
        return str(standards_path(location))
    path = Path(location)
    return str(path if path.is_absolute() else (PACKAGE_ROOT / path))


def load_client(
    wsdl: str, xsd_locations: Mapping[str, str], load_timeout: float, operation_timeout: float, outbound: AllowList | None = None
) -> tuple[zeep.Client, SoapTransport]:
    """Loads the WSDL with every import read from a listed local file; ConfigError names the file.
    A WSDL given as a URL is fetched only from a host the connector's tenants allow."""
    location = resolve_wsdl(wsdl)
    base = PACKAGE_ROOT if _is_url(location) else Path(location).parent
    locations = {key: (Path(value) if Path(value).is_absolute() else base / value) for key, value in xsd_locations.items()}
    if not _is_url(location) and not Path(location).is_file():
        raise ConfigError(f"{wsdl}: WSDL file not found")
    for key, path in locations.items():
        if not path.is_file():
            raise ConfigError(f"{wsdl}: xsd_locations maps {key!r} to {path}, which is not a file")
    transport = SoapTransport(location, locations, load_timeout, operation_timeout, outbound)
    try:
        client = zeep.Client(location, transport=transport, settings=safe_settings())  # type: ignore[no-untyped-call]
    except UnlistedLocation as exc:
        raise ConfigError(
            f"{wsdl}: imports {exc.url}, which is not listed in xsd_locations; "
            "map it to a local copy (nothing is fetched from the network)"
        ) from None
    except OutboundRefused as exc:
        raise ConfigError(f"{wsdl}: {exc.reason}; a WSDL loads only from a file or an allowed host") from None
    except ConfigError:
        raise
    except Exception as exc:  # zeep, lxml, httpx and OSError all mean the same: unusable WSDL
        raise ConfigError(f"{wsdl}: cannot load the WSDL: {type(exc).__name__}: {str(exc)[:300]}") from None
    transport.seal()
    client.settings.forbid_external = True
    return client, transport


def type_name(xsd_type: Any) -> str:
    qname = getattr(xsd_type, "qname", None)
    return str(getattr(qname, "localname", None) or getattr(xsd_type, "name", None) or type(xsd_type).__name__)


def argument_lines(xsd_type: Any, indent: str = "  ", depth: int = 0) -> list[str]:
    """The argument tree of a message or complex type: `name: type [list] (optional)`, nested."""
    lines: list[str] = []
    if not isinstance(xsd_type, ComplexType) or depth > 8:
        return lines
    for name, element in xsd_type.elements:
        child = element.type
        flags = ("[]" if element.accepts_multiple else "") + (" (optional)" if element.is_optional else "")
        lines.append(f"{indent * (depth + 1)}{name}: {type_name(child)}{flags}")
        lines.extend(argument_lines(child, indent, depth + 1))
    for name, attribute in getattr(xsd_type, "attributes", []):
        lines.append(f"{indent * (depth + 1)}@{name}: {type_name(attribute.type)} (attribute)")
    return lines


def record_problems(xsd_type: Any, value: Any, where: str) -> list[str]:
    """Unknown fields, objects where text belongs (and the reverse), and values the XSD type
    cannot read, such as "abc" for an xs:int: zeep itself would send those without complaint."""
    if isinstance(xsd_type, ComplexType):
        if not isinstance(value, Mapping):
            return [f"{where}: expected an object ({type_name(xsd_type)}), got {type(value).__name__}"]
        children = dict(xsd_type.elements)
        attributes = dict(getattr(xsd_type, "attributes", []))
        problems: list[str] = []
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            element = children.get(key)
            if element is None:
                if key not in attributes:
                    known = ", ".join(list(children) + list(attributes))
                    problems.append(f"{path}: no such field in {type_name(xsd_type)} (known: {known})")
                continue
            if item is None:
                continue
            items = item if isinstance(item, list) and element.accepts_multiple else [item]
            for index, one in enumerate(items):
                problems.extend(record_problems(element.type, one, f"{path}[{index}]" if len(items) > 1 else path))
        return problems
    if isinstance(value, (Mapping, list)):
        return [f"{where}: expected a single {type_name(xsd_type)} value, got {type(value).__name__}"]
    parse = getattr(xsd_type, "pythonvalue", None)
    if parse is None or value is None:
        return []
    try:
        text = value if isinstance(value, str) else xsd_type.xmlvalue(value)
        parse(text)
    except Exception:
        return [f"{where}: {value!r} is not a valid {type_name(xsd_type)}"]
    return []
