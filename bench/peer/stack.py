"""Starts and stops the peer for the harness: one uvicorn process for intake and one Celery
worker (prefork pool) at a given prefetch multiplier and concurrency, on a queue of its own.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from bench.hubproc import delete_queue, queue_info
from bench.processes import Group, free_port, python, spawn, stop


class PeerStack:
    def __init__(self, workdir: Path, broker_url: str, sink_url: str, prefetch: int, concurrency: int,
                 pool: str = "prefork") -> None:
        self.name = f"peer-p{prefetch}-c{concurrency}-{pool}"
        self.broker_url = broker_url
        self.queue = f"bench.{self.name}.{secrets.token_hex(3)}"
        self.key = "peer-" + secrets.token_hex(16)
        self.env = {**os.environ, "PEER_BROKER_URL": broker_url, "PEER_SINK_URL": sink_url,
                    "PEER_PREFETCH": str(prefetch), "PEER_QUEUE": self.queue, "PEER_API_KEY": self.key}
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = spawn(python("uvicorn", "bench.peer.app:app", "--port", str(port), "--log-level", "warning",
                                "--no-access-log"), self.env, workdir / f"{self.name}-api.log")
        self.worker = spawn(python("celery", "-A", "bench.peer.tasks", "worker", "--pool", pool,
                                   "--concurrency", str(concurrency), "--prefetch-multiplier", str(prefetch),
                                   "-Q", self.queue, "--loglevel", "WARNING", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat", "-n", f"{self.name}@%h"),
                            self.env, workdir / f"{self.name}-worker.log")
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.api.poll() is not None or self.worker.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the peer did not start: see {workdir}/{self.name}-*.log")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            if httpx.get(f"{self.url}/docs", timeout=2).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
        info = queue_info(self.broker_url, self.queue)
        return info is not None and info[1] >= 1

    def groups(self) -> list[Group]:
        return [Group("peer api", [self.api.pid]), Group("peer worker", [self.worker.pid])]

    def close(self) -> None:
        stop(self.worker)
        stop(self.api)
        delete_queue(self.broker_url, self.queue)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
