"""One measured run of load against a target (the hub or the peer): start the meter, run the load
generator, wait for the sink to receive every accepted submission, and turn it all into figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.durability import Written
from bench.processes import Group, Meter, python, spawn, tree_pids
from bench.sink import Sink


@dataclass
class Context:
    """What every scenario shares: where results go, the servers, the sink and the options."""

    workdir: Path
    sink: Sink
    broker_url: str
    postgres: Any
    server_groups: list[Group]
    options: Any
    results: dict[str, Any] = field(default_factory=dict)
    broker: Any = None  # the RabbitMQServer or RabbitMQCluster behind broker_url
    broker_nodes: int = 1

    @property
    def broker_label(self) -> str:
        return "single RabbitMQ node" if self.broker_nodes == 1 else f"{self.broker_nodes}-node RabbitMQ cluster"

    def save(self, name: str, result: dict[str, Any]) -> dict[str, Any]:
        self.results[name] = result
        (self.workdir / f"{name}.json").write_text(json.dumps(result, indent=2))
        return result


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) and mean of durations given in seconds, in milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1000

    return {"p50": round(rank(0.50), 2), "p90": round(rank(0.90), 2), "p99": round(rank(0.99), 2),
            "max": round(ordered[-1] * 1000, 2), "mean": round(sum(ordered) / len(ordered) * 1000, 2)}


def run_loadgen(ctx: Context, name: str, urls: list[str], key: str, *, mode: str, count: int, rate: float = 0.0,
                connections: int = 64, path: str | None = None) -> dict[str, Any]:
    out = ctx.workdir / f"load-{name}.json"
    args = ["--urls", ",".join(urls), "--key", key, "--mode", mode, "--count", str(count),
            "--rate", str(rate or 1), "--connections", str(connections), "--run", name, "--out", str(out),
            "--seed", str(zlib.crc32(name.encode()) % 100000)]
    if path:
        args += ["--path", path]
    proc = spawn(python("bench.loadgen", *args), dict(os.environ), ctx.workdir / "loadgen.log")
    try:
        proc.wait(timeout=count / max(rate, 50) + 600)
    except subprocess.TimeoutExpired:
        from bench.processes import stop

        stop(proc)
        raise RuntimeError(f"load generator {name} did not finish") from None
    if proc.returncode != 0:
        raise RuntimeError(f"load generator {name} failed: see {ctx.workdir}/loadgen.log")
    load: dict[str, Any] = json.loads(out.read_text())
    out.unlink()  # per-request times are summarised below; keep the results folder small
    return load


def wait_for_sink(sink: Sink, expected: int, stall: float = 20.0, limit: float = 900.0) -> tuple[dict[str, Any], bool]:
    """Waits until the sink has `expected` unique keys, or nothing arrived for `stall` seconds."""
    started = last_change = time.monotonic()
    seen = -1
    while True:
        stats = sink.stats()
        if stats["unique"] >= expected:
            return stats, True
        now = time.monotonic()
        if stats["unique"] != seen:
            seen, last_change = stats["unique"], now
        if now - last_change > stall or now - started > limit:
            return stats, False
        time.sleep(0.2)


def analyse(load: dict[str, Any], arrivals: dict[str, float], suffix: str = "/sink") -> dict[str, Any]:
    """Intake and end-to-end figures from the load generator's times and the sink's arrivals."""
    n = load["count"]
    ok = [i for i in range(n) if load["status"][i] == 202]
    due, sent, done = load["due"], load["sent"], load["done"]
    intake: dict[str, Any] = {"offered": n, "accepted": len(ok), "errors": load["errors"]}
    if load["mode"] == "rate":
        intake["offered_per_second"] = load["rate"]
    if ok:
        window = max(done[i] for i in ok) - min(sent[i] for i in ok)
        intake["per_second"] = round(len(ok) / window, 1) if window > 0 else None
        # from the moment a request was due, so a slow server cannot hide queueing (coordinated omission)
        intake["latency_ms"] = summary_ms([done[i] - due[i] for i in ok])
        intake["service_ms"] = summary_ms([done[i] - sent[i] for i in ok])
    e2e_lat: list[float] = []
    last_arrival = 0.0
    for i in ok:
        arrived = arrivals.get(load["reference"][i] + suffix)
        if arrived is not None:
            e2e_lat.append(arrived - due[i])
            last_arrival = max(last_arrival, arrived)
    e2e: dict[str, Any] = {"completed": len(e2e_lat), "missing": len(ok) - len(e2e_lat)}
    if e2e_lat:
        first_due = min(due[i] for i in ok)
        e2e["per_second"] = round(len(e2e_lat) / (last_arrival - first_due), 1)
        e2e["latency_ms"] = summary_ms(e2e_lat)
        e2e["last_arrival_after_last_accept_s"] = round(last_arrival - max(done[i] for i in ok), 2)
    return {"intake": intake, "end_to_end": e2e,
            "load_generator": {"cpu_seconds": load.get("cpu_seconds"), "peak_rss_mb": load.get("peak_rss_mb"),
                               "connections": load["connections"], "body_bytes_mean": round(load["body_bytes_mean"])}}


def drive(ctx: Context, name: str, urls: list[str], key: str, groups: list[Group], *, mode: str, count: int,
          rate: float = 0.0, connections: int = 64, hub: Any = None) -> dict[str, Any]:
    """One scenario against a running target; `hub` (a HubStack) adds the database's own counts."""
    ctx.sink.reset()
    load_average = [round(x, 2) for x in os.getloadavg()]
    # every node's processes once: a cluster's disk bytes are the sum over its nodes
    rabbit = sorted({p for g in ctx.server_groups if g.name == "rabbitmq" for p in tree_pids(*g.roots)})
    written = Written(ctx.postgres.url, rabbit)
    with Meter([*groups, Group("sink", [ctx.sink.proc.pid]), *ctx.server_groups]) as meter:
        load = run_loadgen(ctx, name, urls, key, mode=mode, count=count, rate=rate, connections=connections)
        accepted = sum(1 for s in load["status"] if s == 202)
        stats, drained = wait_for_sink(ctx.sink, accepted)
    result = analyse(load, ctx.sink.arrivals())
    result.update(mode=mode, drained=drained, load_average_at_start=load_average,
                  sink={k: stats[k] for k in ("unique", "received", "duplicates")},
                  resources=meter.result(), written=written.per_submission(accepted))
    if hub is not None:
        deadline = time.monotonic() + 30
        while True:
            counts = hub.counts()
            if counts.get("deliveries_delivered", 0) >= accepted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        result["database"] = counts
    return result
