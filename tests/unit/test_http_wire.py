"""The REST connector's wire: HTTP/1.1 written by the hub and read with httptools, against a
loopback server that counts connections and can answer in the ways real back offices do."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from connectors.http_wire import WireTransport
from hub.outbound.guard import AllowList


class Server:
    """Answers each request with the next canned reply; counts connections and requests."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.connections = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while self.replies:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                reply = self.replies.pop(0)
                conn.sendall(reply)
                if b"connection: close" in reply.lower() or b"content-length" not in reply.lower():
                    return


@pytest.fixture()
def wire() -> Iterator[WireTransport]:
    transport = WireTransport(AllowList(("127.0.0.1",)))
    yield transport
    transport.close()


def post(wire: WireTransport, server: Server, headers: list[tuple[bytes, bytes]] | None = None) -> httpx.Response:
    body = b'{"a": 1}'
    base = [(b"Host", f"127.0.0.1:{server.port}".encode()), (b"Content-Length", str(len(body)).encode())]
    return wire.exchange(("http", "127.0.0.1", server.port), "POST", "/cases", base + (headers or []), body,
                         {"connect": 2, "read": 2, "write": 2})


OK = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"case\": \"C-1\"}"


def test_requests_share_one_kept_connection_and_replies_are_read_whole(wire: WireTransport) -> None:
    server = Server([OK] * 20)
    replies = [post(wire, server, [(b"Idempotency-Key", f"EDC-{n}/crm".encode())]) for n in range(20)]
    assert [r.status_code for r in replies] == [201] * 20
    assert replies[0].json() == {"case": "C-1"} and replies[0].reason_phrase == "Created"
    assert server.connections == 1
    assert server.requests[3].startswith(b"POST /cases HTTP/1.1\r\n") and b"Idempotency-Key: EDC-3/crm\r\n" in server.requests[3]
    assert server.requests[3].endswith(b'\r\n\r\n{"a": 1}')


def test_a_reply_that_closes_the_connection_is_read_and_the_next_request_opens_another(wire: WireTransport) -> None:
    closing = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy"
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the server closes"
    server = Server([closing, until_close, OK])
    first, second, third = post(wire, server), post(wire, server), post(wire, server)
    assert (first.status_code, first.text) == (503, "busy")
    assert (second.status_code, second.text) == (200, "read until the server closes")
    assert third.status_code == 201
    assert server.connections == 3


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(wire: WireTransport) -> None:
    server = Server([OK])
    with pytest.raises(httpx.LocalProtocolError, match="X-Api-Key"):
        post(wire, server, [(b"X-Api-Key", b"secret\r\nX-Injected: yes")])
    assert server.requests == []


def test_a_server_that_hangs_up_without_answering_is_a_protocol_error(wire: WireTransport) -> None:
    server = Server([b""])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        post(wire, server)
