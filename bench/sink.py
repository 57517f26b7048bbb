"""The back-office sink: a fast HTTP/1.1 server (asyncio, uvloop, httptools) that accepts every
record, counts unique Idempotency-Keys and duplicates, and records when each key first arrived.

Run as its own process: `python -m bench.sink --port P`. Control on the same port:
`GET /_control/stats`, `GET /_control/arrivals` ({key: first arrival, time.monotonic()}),
`POST /_control/fail?status=503` (answer every record with that status; 0 = accept again),
`POST /_control/reset`. Arrival times use CLOCK_MONOTONIC, which every process on the machine shares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httptools

_REASONS = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 500: b"Internal Server Error",
            503: b"Service Unavailable"}


class State:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.first_arrival: dict[str, float] = {}
        self.received = 0
        self.duplicates = 0
        self.refused = 0
        self.without_key = 0
        self.fail_status = 0

    def stats(self) -> dict[str, Any]:
        arrivals = self.first_arrival.values()
        return {
            "unique": len(self.first_arrival),
            "received": self.received,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "without_key": self.without_key,
            "fail_status": self.fail_status,
            "first": min(arrivals) if arrivals else None,
            "last": max(arrivals) if arrivals else None,
            "now": time.monotonic(),
        }


STATE = State()
_OK_BODY = b'{"result":"success"}'


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status, _REASONS.get(status, b"Status"), content_type, len(body))) + body


_OK = _response(200, _OK_BODY)


class SinkProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.key: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response(400, b"{}"))
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.key = b"", None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 15 and name.lower() == b"idempotency-key":
            self.key = value

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.url.startswith(b"/_control"):
            self.transport.write(self._control())
        else:
            self.transport.write(self._record())
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _record(self) -> bytes:
        state = STATE
        if state.fail_status:
            state.refused += 1
            return _response(state.fail_status, b'{"result":"unavailable"}')
        state.received += 1
        if self.key is None:
            state.without_key += 1
            return _OK
        key = self.key.decode()
        if key in state.first_arrival:
            state.duplicates += 1
        else:
            state.first_arrival[key] = time.monotonic()
        return _OK

    def _control(self) -> bytes:
        parts = urlsplit(self.url.decode())
        query = parse_qs(parts.query)
        if parts.path == "/_control/stats":
            return _response(200, json.dumps(STATE.stats()).encode())
        if parts.path == "/_control/arrivals":
            return _response(200, json.dumps(STATE.first_arrival).encode())
        if parts.path == "/_control/fail":
            STATE.fail_status = int(query.get("status", ["503"])[0])
            return _response(200, json.dumps(STATE.stats()).encode())
        if parts.path == "/_control/reset":
            STATE.reset()
            return _response(200, b"{}")
        return _response(404, b"{}")


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        run_fast(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


def run_fast(coro: Any) -> Any:
    """Runs a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # plain asyncio works too, a little slower
        return asyncio.run(coro)
    return uvloop.run(coro)


class Sink:
    """The sink process, seen from the harness: start, control, read, stop."""

    def __init__(self, workdir: Path) -> None:
        from bench.processes import free_port, python, spawn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(python("bench.sink", "--port", str(self.port)), dict(os.environ), workdir / "sink.log")
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sink did not start; see sink.log") from None
                time.sleep(0.05)

    def _call(self, method: str, path: str) -> Any:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/_control/stats"))

    def arrivals(self) -> dict[str, float]:
        return dict(self._call("GET", "/_control/arrivals"))

    def fail(self, status: int) -> None:
        self._call("POST", f"/_control/fail?status={status}")

    def reset(self) -> None:
        self._call("POST", "/_control/reset")

    def stop(self) -> None:
        from bench.processes import stop

        stop(self.proc)


if __name__ == "__main__":
    main()
