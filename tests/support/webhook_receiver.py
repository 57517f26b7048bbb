"""A front end's webhook endpoint on loopback (http.server in a thread): records every request,
and can answer the first N with a failure or a redirect."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.fail_next = 0
        self.failure_status = 503
        self.redirect_to: str | None = None
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    if receiver.redirect_to is not None and self.path != receiver.redirect_to:
                        status = 307
                    elif receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        status = receiver.failure_status
                    else:
                        status = 204
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                if status == 307:
                    self.send_header("Location", receiver.redirect_to or "/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/hub"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def wait_for(self, count: int, timeout: float = 15.0, tick: Any = None) -> list[Received]:
        """Waits until `count` requests were accepted, calling `tick()` (e.g. a sender's run) meanwhile."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted())} of {count} webhook requests accepted after {timeout} s: {self.received}")
            if tick is not None:
                tick()
            time.sleep(0.05)
        return self.accepted()
