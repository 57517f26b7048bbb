"""The hub's one HTTP client, for every connector and webhook: a request leaves only for a host
its tenants allow, connects only to the addresses it has just checked (so a DNS answer that
changes after the check, rebinding, cannot reach a metadata service), and a redirect is never
followed. No proxy from the environment is used: the hub itself is the gate.
"""

from __future__ import annotations

import typing

import httpcore
import httpx

from hub.errors import OutboundRefused
from hub.outbound.guard import AllowList, check_host, current_allow_list, safe_addresses


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
