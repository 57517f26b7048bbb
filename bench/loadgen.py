"""The load generator: posts `missed-bin-collection` submissions open-loop at a fixed offered rate
(request i is due at t0 + i/rate whatever has completed) or as a burst as fast as it can.

A minimal keep-alive HTTP/1.1 client on asyncio + uvloop + httptools rather than httpx: at
1,000 req/s httpx would take a good part of one of the two cores the hub itself needs.
Run as its own process; writes every request's due, sent and done times (CLOCK_MONOTONIC) as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import httptools

from bench.payloads import payloads
from bench.sink import run_fast

FORM_PATH = "/v1/forms/missed-bin-collection/submissions"
TIMEOUT = 30.0


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed by server"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), bytes(self.body)))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.body = bytearray()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await asyncio.wait_for(self.waiter, TIMEOUT)


class Pool:
    """`size` connections spread over the hub's API processes, handed out one request at a time."""

    def __init__(self, urls: list[str], size: int) -> None:
        self.targets = [(u.split("://", 1)[1].split(":")[0], int(u.rsplit(":", 1)[1])) for u in urls]
        self.size = size
        self.idle: asyncio.Queue[tuple[int, Connection]] = asyncio.Queue()

    async def open(self) -> None:
        for slot in range(self.size):
            self.idle.put_nowait((slot, await self._connect(slot)))

    async def _connect(self, slot: int) -> Connection:
        host, port = self.targets[slot % len(self.targets)]
        _, conn = await asyncio.get_running_loop().create_connection(Connection, host, port)
        return conn

    async def call(self, build: Any, written: list[float] | None = None, index: int = 0) -> tuple[int, bytes]:
        """One request on the next idle connection; `written[index]` gets the time it was written
        to the socket, after any wait for a connection (that wait is the generator's, not the hub's)."""
        slot, conn = await self.idle.get()
        try:
            if conn.closed:
                conn = await self._connect(slot)
            if written is not None:
                written[index] = time.monotonic()
            return await conn.request(build(self.targets[slot % len(self.targets)]))
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            conn = Connection()
            conn.closed = True
            raise
        finally:
            self.idle.put_nowait((slot, conn))


def build_requests(bodies: list[bytes], key: str, run: str, path: str) -> list[Any]:
    """A builder per body: the request bytes for a given (host, port)."""
    def builder(index: int, body: bytes) -> Any:
        head = (f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                f"Idempotency-Key: {run}-{index}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        return lambda target: f"POST {path} HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n".encode() + head + body
    return [builder(i, b) for i, b in enumerate(bodies)]


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    bodies = payloads(args.count, seed=args.seed, start=args.start_index)
    requests = build_requests(bodies, args.key, args.run, args.path)
    n = len(requests)
    due, sent, done = [0.0] * n, [0.0] * n, [0.0] * n
    status, refs = [0] * n, [""] * n
    errors: dict[str, int] = {}
    pool = Pool(args.urls.split(","), args.connections)
    await pool.open()

    async def one(i: int) -> None:
        sent[i] = time.monotonic()  # moved on to when it is written, past any wait for a connection
        try:
            code, body = await pool.call(requests[i], sent, i)
            status[i] = code
            if code == 202:
                refs[i] = json.loads(body)["reference"]
            elif code != 200:  # 200: the sink itself, when measuring the harness's own ceiling
                errors[f"HTTP {code}"] = errors.get(f"HTTP {code}", 0) + 1
        except Exception as exc:  # counted and reported; the run goes on
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        done[i] = time.monotonic()

    t0 = time.monotonic() + 0.2
    if args.mode == "rate":
        tasks = []
        for i in range(n):
            due[i] = t0 + i / args.rate
            delay = due[i] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(n))
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))

        async def lane() -> None:
            for i in counter:
                due[i] = time.monotonic()
                await one(i)

        await asyncio.gather(*(lane() for _ in range(args.connections)))
    return {"mode": args.mode, "rate": args.rate, "count": n, "connections": args.connections,
            "body_bytes_mean": sum(map(len, bodies)) / max(1, n), "t0": t0, "due": due, "sent": sent,
            "done": done, "status": status, "reference": refs, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", required=True, help="comma-separated base URLs of the API processes")
    parser.add_argument("--path", default=FORM_PATH)
    parser.add_argument("--key", required=True, help="the client's API key")
    parser.add_argument("--mode", choices=["rate", "burst"], default="rate")
    parser.add_argument("--rate", type=float, default=500.0, help="offered requests/s (rate mode)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--start-index", type=int, default=0)
    parser.add_argument("--run", default="bench", help="prefix of the Idempotency-Keys sent")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = run_fast(run_load(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
