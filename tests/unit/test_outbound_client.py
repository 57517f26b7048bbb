"""The hub's one HTTP client on the wire, against real local servers: connections kept alive per
sending thread and dropped when the server closed them, answers read whole up to a bound,
timeouts and TLS verification as a connector meets them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.outbound import client as outbound
from hub.outbound.guard import AllowList
from tests.support.tls import self_signed

LOCAL = AllowList(("127.0.0.1",))


class Office(ThreadingHTTPServer):
    """A back office that counts the connections made to it; `close_after_answer` shuts each
    connection after answering without saying so (as a server timing out idle ones does)."""

    daemon_threads = True

    def __init__(self, close_after_answer: bool = False, body: bytes = b'{"ok": true}', hang: float = 0.0) -> None:
        self.connections = 0
        self.close_after_answer, self.body, self.hang = close_after_answer, body, hang
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cases"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Office

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.hang)
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)
        if self.server.close_after_answer:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serving(office: Office) -> Iterator[Office]:
    thread = threading.Thread(target=office.serve_forever, daemon=True)
    thread.start()
    try:
        yield office
    finally:
        office.shutdown()
        office.server_close()


@pytest.fixture()
def office() -> Iterator[Office]:
    yield from serving(Office())


def post(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(url, content=b'{"case": 1}', headers={"Content-Type": "application/json"})


def test_one_connection_is_kept_alive_for_each_sending_thread(office: Office) -> None:
    with outbound.client(5, 2, LOCAL) as client:
        answers = [post(client, office.url) for _ in range(5)]
        assert [a.status_code for a in answers] == [201] * 5 and answers[0].json() == {"ok": True}
        assert office.connections == 1
        other = threading.Thread(target=lambda: [post(client, office.url) for _ in range(3)])
        other.start()
        other.join()
        assert office.connections == 2


def test_a_connection_the_back_office_closed_while_idle_is_not_reused() -> None:
    for office in serving(Office(close_after_answer=True)):
        with outbound.client(5, 2, LOCAL) as client:
            for _ in range(3):
                assert post(client, office.url).status_code == 201
                time.sleep(0.05)  # the server's close reaches the idle socket
        assert office.connections == 3


def test_an_answer_larger_than_the_bound_is_refused_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbound, "MAX_RESPONSE_BYTES", 1000)
    for office in serving(Office(body=b"x" * 1001)):
        with outbound.client(5, 2, LOCAL) as client, pytest.raises(httpx.RemoteProtocolError, match="more than 1000 bytes"):
            post(client, office.url)


def test_a_back_office_that_does_not_answer_in_time_is_a_read_timeout() -> None:
    for office in serving(Office(hang=2.0)):
        with outbound.client(0.3, 2, LOCAL) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                post(client, office.url)
            assert time.monotonic() - started < 1.5


def test_a_host_that_refuses_connections_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with outbound.client(1, 1, LOCAL) as client, pytest.raises(httpx.ConnectError):
        post(client, f"http://127.0.0.1:{port}/cases")


def test_tls_is_verified_a_self_signed_back_office_is_refused_and_a_trusted_one_answers(tmp_path: Path) -> None:
    cert, tls = self_signed(tmp_path)
    plain = Office()
    plain.socket = tls.wrap_socket(plain.socket, server_side=True)
    for office in serving(plain):
        url = office.url.replace("http://", "https://")
        with outbound.client(5, 2, LOCAL) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                post(client, url)
            transport = client._transport
            assert isinstance(transport, outbound.GuardedTransport)
            transport._ssl.load_verify_locations(cert)  # as a council's own CA bundle would
            assert post(client, url).json() == {"ok": True}
