"""The hub's one HTTP client, for every connector and webhook: a request leaves only for a host
its tenants allow, connects only to the addresses it has just checked (so a DNS answer that
changes after the check, rebinding, cannot reach a metadata service), and a redirect is never
followed. No proxy from the environment is used: the hub itself is the gate.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from hub.errors import OutboundRefused
from hub.outbound.guard import AllowList, check_host, current_allow_list, safe_addresses

# a back office's answer is read whole; one larger than this is refused, not held in memory
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# an idle connection older than this is closed rather than reused (servers close them at ~5 s+)
KEEPALIVE_SECONDS = 4.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Idle:
    __slots__ = ("connection", "since")

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        self.connection = connection
        self.since = time.monotonic()


@dataclass(frozen=True, slots=True)
class Reply:
    """A back office's whole answer, as `GuardedTransport.exchange` read it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    content: bytes
    method: str
    url: httpx.URL

    def response(self, request: httpx.Request | None = None) -> httpx.Response:
        """As an httpx response, for code that reads one (refusals, redirects, httpx clients)."""
        return httpx.Response(self.status, headers=self.headers, content=self.content,
                              request=request or httpx.Request(self.method, self.url),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": self.reason.encode("latin-1", "replace")})


class GuardedTransport(httpx.BaseTransport):
    """httpx's transport interface on the standard library's `http.client`: the allow-list before
    every request, then a connection only to an address it has just resolved and checked (so a
    DNS answer that changes after the check, rebinding, cannot reach a metadata address), kept
    alive per sending thread. No proxy from the environment is used: the hub itself is the gate.

    Why not httpcore under httpx: it cost ~210 us of CPU a request here against ~65 us for
    http.client, and its pool, shared by a worker's 16 sending threads, scans every connection
    under one lock per request; together half a worker's CPU in the bench's profile."""

    def __init__(self, outbound: AllowList) -> None:
        self.outbound = outbound
        self._ssl = httpx.create_ssl_context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._idle_sets: list[dict[tuple[str, str, int], list[_Idle]]] = []
        # host:port pairs the allow-list passed (it does not change for a transport's life)
        self._allowed: set[tuple[str, int]] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        reply = self.exchange(request.method, request.url, request.headers.raw, request.read(), timeouts, request)
        return reply.response(request)

    def exchange(self, method: str, url: httpx.URL, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes,
                 timeouts: dict[str, float | None], request: httpx.Request | None = None) -> Reply:
        """One request and its whole answer, under `handle_request` and for callers that build
        neither httpx model (the REST connector's sends: ~60 us of CPU a call saved). `headers`
        are sent as given, so they include Host and Content-Length."""
        if url.scheme not in _DEFAULT_PORTS:
            raise OutboundRefused(f"connectors call only http(s) URLs, not {url.scheme}")
        port = url.port or _DEFAULT_PORTS[url.scheme]
        # the resolved addresses are checked as each connection is made (`_connect`)
        if (url.host, port) not in self._allowed:
            check_host(url.host, port, self.outbound, resolve=False)
            self._allowed.add((url.host, port))
        key = (url.scheme, url.host, port)
        connection = self._reuse(key) or self._connect(url.scheme, url.host, port, timeouts.get("connect"))
        try:
            connection.sock.settimeout(timeouts.get("read"))
            connection.putrequest(method, url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            connection.endheaders(body or None)
            answer = connection.getresponse()
            content = answer.read(MAX_RESPONSE_BYTES + 1)
        except TimeoutError as exc:
            connection.close()
            raise httpx.ReadTimeout(f"{url.host}: {exc or 'timed out'}", request=request) from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise httpx.RemoteProtocolError(f"{url.host}: {type(exc).__name__}", request=request) from None
        if len(content) > MAX_RESPONSE_BYTES:
            connection.close()
            raise httpx.RemoteProtocolError(f"{url.host} answered more than {MAX_RESPONSE_BYTES} bytes", request=request)
        if answer.will_close:
            connection.close()
        else:
            self._idle().setdefault(key, []).append(_Idle(connection))
        return Reply(answer.status, answer.reason, answer.getheaders(), content, method, url)

    def _idle(self) -> dict[tuple[str, str, int], list[_Idle]]:
        idle: dict[tuple[str, str, int], list[_Idle]] | None = getattr(self._local, "idle", None)
        if idle is None:
            idle = self._local.idle = {}
            with self._lock:
                self._idle_sets.append(idle)
        return idle

    def _reuse(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        """This thread's idle connection to the same place, if it is fresh and the server has not
        closed it (a readable idle socket means it did, or sent what nobody asked for)."""
        idle = self._idle().get(key)
        while idle:
            kept = idle.pop()
            sock = kept.connection.sock
            if time.monotonic() - kept.since < KEEPALIVE_SECONDS and sock is not None and not select.select([sock], [], [], 0)[0]:
                return kept.connection
            kept.connection.close()
        return None

    def _connect(self, scheme: str, host: str, port: int, timeout: float | None) -> http.client.HTTPConnection:
        try:
            addresses = safe_addresses(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"{host}: {exc}") from None
        failure: httpx.TransportError = httpx.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    sock = self._ssl.wrap_socket(sock, server_hostname=host)
            except TimeoutError:
                failure = httpx.ConnectTimeout(f"{host} ({address}): no connection within {timeout} s")
                continue
            except OSError as exc:  # refused, unreachable, or the TLS handshake failed
                failure = httpx.ConnectError(f"{host} ({address}): {exc}")
                continue
            connection = http.client.HTTPConnection(host, port)
            connection.sock = sock
            return connection
        raise failure

    def close(self) -> None:
        with self._lock:
            sets, self._idle_sets = self._idle_sets, []
        for idle in sets:
            for kept in [k for waiting in idle.values() for k in waiting]:
                kept.connection.close()
            idle.clear()


def client(timeout_seconds: float, connect_timeout_seconds: float, outbound: AllowList | None = None,
           transport: GuardedTransport | None = None) -> httpx.Client:
    """The hub's one HTTP client, for every connector (REST, SOAP, Open311) and webhook: explicit
    timeouts, calls only where `outbound` allows (by default the allow-list of the connector being
    built; a client made later is given `self.outbound`), connects only to addresses just checked,
    and redirects not followed (a back office that moves must be reconfigured, not chased). A
    caller that also sends through the transport itself (`GuardedTransport.exchange`) passes it."""
    allow = outbound if outbound is not None else current_allow_list()
    return httpx.Client(
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        follow_redirects=False,
        transport=transport or GuardedTransport(allow),
    )
