"""`hub api`'s graceful stop. On SIGTERM (or SIGINT) the process first drains for `drain_seconds`:
it still serves every request, but /readyz answers 503 and each response closes its connection,
so a load balancer that watches readiness, and keep-alive clients, move to another replica. Then
uvicorn stops listening, finishes the requests in flight (for at most `grace_seconds`), and the
lifespan stops the relay after the batch in hand. A second signal skips what is left of the drain.
"""

from __future__ import annotations

import threading
from types import FrameType
from typing import Any

import uvicorn


class CloseWhileDraining:
    """ASGI wrapper: while `draining` is set, every response carries `Connection: close`."""

    def __init__(self, app: Any, draining: threading.Event) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.draining.is_set():
            await self.app(scope, receive, send)
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, draining: threading.Event, drain_seconds: float) -> None:
        super().__init__(config)
        self.draining = draining
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_seconds <= 0 or self.draining.is_set():
            self.draining.set()
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        self.draining.set()
        timer = threading.Timer(self.drain_seconds, self._stop)
        timer.daemon = True
        timer.start()

    def _stop(self) -> None:
        self.should_exit = True


def serve(app: Any, host: str, port: int, drain_seconds: float, grace_seconds: int) -> None:
    """Runs the api until a signal, then drains and stops as above."""
    draining: threading.Event = app.state.draining
    config = uvicorn.Config(CloseWhileDraining(app, draining), host=host, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=grace_seconds)
    GracefulServer(config, draining, drain_seconds).run()
