"""One HTTP call to a back office, with its failures sorted the same way for every HTTP-based
connector: no answer, a 5xx, 408, 425 or 429 is worth retrying; any other refusal is not.

Every connector's client goes through `GuardedTransport`: a request leaves only for a host its
tenants allow, connects only to addresses checked at that moment, and a redirect is never followed.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import httpcore
import httpx

from connectors.base import Health
from hub.errors import OutboundRefused, PermanentError, TransientError
from hub.outbound.guard import AllowList, check_host, current_allow_list, safe_addresses

TRANSIENT_STATUS = frozenset({408, 425, 429})


def call(name: str, timeout_seconds: float, send: Callable[[], httpx.Response], refusal: Callable[[httpx.Response], str]) -> httpx.Response:
    """Makes the call; returns a 2xx response, or raises TransientError / PermanentError whose
    reason is `refusal(response)` for a refused record."""
    try:
        response = send()
    except OutboundRefused as exc:
        raise OutboundRefused(f"{name} was not called: {exc.reason}") from None
    except httpx.TimeoutException:
        raise TransientError(f"no reply from {name} within {timeout_seconds:g} s") from None
    except httpx.TransportError as exc:
        raise TransientError(f"could not reach {name}: {type(exc).__name__}") from None
    status = response.status_code
    if status >= 500 or status in TRANSIENT_STATUS:
        raise TransientError(f"{name} answered HTTP {status}")
    if response.is_redirect:
        raise PermanentError(redirect_reason(response))
    if status >= 300:
        raise PermanentError(refusal(response))
    return response


def redirect_reason(response: httpx.Response) -> str:
    if response.next_request is not None:  # the httpx client worked out where it pointed
        target = response.next_request.url.host
    else:  # a reply straight from the transport (`RestConnector._post`), given the request it answered
        try:
            target = response.request.url.join(response.headers["location"]).host or "an unreadable location"
        except (KeyError, RuntimeError, httpx.InvalidURL):
            target = "an unreadable location"
    return f"the back office answered with a redirect to {target}, which the hub does not follow"


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves each name itself and connects only to addresses it has just checked, so a DNS
    answer that changes after the check (rebinding) cannot reach a metadata address."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = safe_addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from None
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("connectors do not call local sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the allow-list before every request and `_CheckedBackend` under it.
    No proxy from the environment is used: the hub itself is the gate."""

    def __init__(self, outbound: AllowList) -> None:
        super().__init__()
        self.outbound = outbound
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckedBackend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise OutboundRefused(f"connectors call only http(s) URLs, not {url.scheme}")
        # the resolved addresses are checked by the backend as it connects
        check_host(url.host, url.port or (443 if url.scheme == "https" else 80), self.outbound, resolve=False)
        return super().handle_request(request)


def client(timeout_seconds: float, connect_timeout_seconds: float, outbound: AllowList | None = None) -> httpx.Client:
    """The hub's one HTTP client, for every connector (REST, SOAP, Open311) and webhook: explicit
    timeouts, calls only where `outbound` allows (by default the allow-list of the connector being
    built; a client made later is given `self.outbound`), connects only to addresses just checked,
    and redirects not followed (a back office that moves must be reconfigured, not chased)."""
    allow = outbound if outbound is not None else current_allow_list()
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        follow_redirects=False,
        transport=GuardedTransport(allow),
    )


def health(status: int, unhealthy_from: int = 500, where: str = "") -> Health:
    """What a `check()` probe's HTTP status says about the back office."""
    if status in (401, 403):
        return Health(False, f"credentials rejected (HTTP {status})")
    if status >= unhealthy_from:
        return Health(False, f"back office unhealthy (HTTP {status}{where})")
    return Health(True, f"reachable (HTTP {status})")
