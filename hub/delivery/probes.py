"""The worker's probes and metrics on one port (`hub worker --metrics-port`), for Kubernetes and
compose health checks:

- `/healthz` (liveness): the consuming thread came round its loop within `STALE_SECONDS`; a
  worker stuck there is restarted, one waiting out a broker outage is not (it beats while waiting).
- `/readyz` (readiness): consuming from the broker, and the database answers.
- `/metrics`: the Prometheus metrics.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub.delivery.worker import Worker
from hub.store import db

# longer than the worst gap between beats: a reconnect pause (10 s) plus a connect timeout per host
STALE_SECONDS = 60.0


def answer(worker: Worker, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a probe path."""
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest()
    if path == "/healthz":
        age = time.monotonic() - worker.last_beat
        alive = age < STALE_SECONDS
        body: dict[str, Any] = {"status": "ok" if alive else "stuck", "seconds_since_loop": round(age, 1)}
        return (200 if alive else 503), "application/json", json.dumps(body).encode()
    if path == "/readyz":
        checks = {"broker": worker.consuming, "database": db.answers(worker.runtime.engine)}
        ready = all(checks.values())
        return (200 if ready else 503), "application/json", json.dumps({"ready": ready, "checks": checks}).encode()
    return 404, "application/json", b'{"error": "not found: try /healthz, /readyz or /metrics"}'


def serve(worker: Worker, host: str, port: int) -> ThreadingHTTPServer:
    """Serves the probes from a daemon thread; returns the server (its port, for shutdown)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = answer(worker, self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not logged
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="hub-probes", daemon=True).start()
    return server
