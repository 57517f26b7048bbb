"""The scenarios of issue 6, each bounded in time: ceilings, steady open-loop load, a burst, a
profiled burst, backlog drain, worker scaling, and the Celery peer at each prefetch/concurrency.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import ceiling
from bench.hubproc import HubStack
from bench.machine import cpu_check_ms
from bench.measure import Context, drive, run_loadgen, summary_ms
from bench.peer.stack import PeerStack
from bench.processes import Group, Meter
from bench.profile import Profiler, summarise


def ceilings(ctx: Context) -> None:
    opts = ctx.options
    print("  validation micro-benchmark", flush=True)
    ctx.save("validation", ceiling.validation(opts.validation_count))
    print("  broker ceiling", flush=True)
    ctx.save("broker", ceiling.broker(ctx.broker_url, opts.broker_messages))
    print("  harness ceiling (load generator -> sink, no hub)", flush=True)
    ctx.sink.reset()
    load = run_loadgen(ctx, "harness", [ctx.sink.url], "none", mode="burst", count=opts.burst, connections=64)
    ok = [i for i, s in enumerate(load["status"]) if s == 200]
    window = max(load["done"]) - min(load["sent"])
    ctx.save("harness", {"requests": len(ok), "per_second": round(len(ok) / window, 1),
                         "latency_ms": summary_ms([load["done"][i] - load["sent"][i] for i in ok]),
                         "load_generator_cpu_seconds": load["cpu_seconds"]})


def hub_stack(ctx: Context, name: str, workers: int | None = None) -> HubStack:
    opts = ctx.options
    hub = HubStack(ctx.workdir, ctx.postgres, ctx.broker_url, ctx.sink.url, name)
    hub.start_apis(opts.apis)
    if workers is None:
        workers = opts.workers
    if workers:
        hub.start_workers(workers, opts.concurrency)
    return hub


def steady_and_burst(ctx: Context) -> None:
    _hub_runs(ctx, ctx.options.rates)


def burst(ctx: Context) -> None:
    """The burst alone (and the profiled burst unless --no-profile), without the steady rates."""
    _hub_runs(ctx, [])


def _hub_runs(ctx: Context, rates: list[float], burst_name: str = "hub-burst", profile: bool | None = None,
              stack: str = "hubmain") -> None:
    """Steady runs at `rates`, the burst saved as `burst_name`, then the profiled burst."""
    opts = ctx.options
    hub = hub_stack(ctx, stack)
    try:
        groups = hub.groups()
        for rate in rates:
            print(f"  hub steady {rate:g} req/s for {opts.duration:g} s", flush=True)
            result = drive(ctx, f"hub-steady-{rate:g}", hub.api_urls, hub.key, groups, mode="rate",
                           count=int(rate * opts.duration), rate=rate, hub=hub)
            ctx.save(f"hub-steady-{rate:g}", {**_setup(opts), **result})
        print(f"  hub burst of {opts.burst} ({ctx.broker_label})", flush=True)
        checked = cpu_check_ms()
        result = drive(ctx, burst_name, hub.api_urls, hub.key, groups, mode="burst", count=opts.burst, hub=hub)
        result.update(cpu_check_ms=checked, rabbitmq=_broker_setup(ctx, hub.queue))
        ctx.save(burst_name, {**_setup(opts), **result})
        if opts.profile if profile is None else profile:
            print(f"  hub burst of {opts.profile_count} under py-spy", flush=True)
            targets = {f"api{i}": p.pid for i, p in enumerate(hub.apis)}
            targets.update({f"worker{i}": p.pid for i, p in enumerate(hub.workers)})
            profiler = Profiler(ctx.workdir, targets)
            time.sleep(1.0)
            try:
                result = drive(ctx, "hub-profiled", hub.api_urls, hub.key, groups, mode="burst",
                               count=opts.profile_count, hub=hub)
            finally:
                profiler.stop()
            ctx.save("hub-profile", {"burst": result, "processes": {name: summarise(path)
                                                                   for name, path in profiler.files.items()}})
    finally:
        hub.close()


def cluster_burst(ctx: Context, nodes: int) -> None:
    """The burst again, on a RabbitMQ of `nodes` nodes, for the report's comparison with the first."""
    _hub_runs(ctx, [], burst_name=f"hub-burst-rabbitmq-{nodes}", profile=False, stack=f"hubrabbit{nodes}")


def _broker_setup(ctx: Context, queue: str) -> dict[str, Any]:
    """How many nodes the broker has and, on a cluster, the nodes the hub's quorum queue is
    replicated on (its Raft members) and which one leads it."""
    setup: dict[str, Any] = {"nodes": ctx.broker_nodes}
    if ctx.broker_nodes > 1:
        setup.update(ctx.broker.queue_members(queue))
    return setup


def _setup(opts: Any) -> dict[str, Any]:
    return {"setup": {"api_processes": opts.apis, "worker_processes": opts.workers,
                      "worker_concurrency": opts.concurrency}}


def _queue_up(ctx: Context, hub: HubStack, count: int) -> dict[str, Any]:
    """Stores `count` submissions while no worker runs, and waits for the relay to publish them all."""
    done = threading.Event()
    fill: dict[str, float] = {}

    def filler() -> None:
        try:
            fill["seconds"] = hub.fill(count)
        finally:
            done.set()

    started = time.monotonic()
    thread = threading.Thread(target=filler, daemon=True)
    with Meter(hub.groups() + ctx.server_groups) as meter:
        thread.start()
        while True:
            # a message carries several deliveries: the relay is done when the outbox is empty
            left = hub.counts()["outbox"] if done.is_set() else -1
            if left == 0:
                break
            if time.monotonic() - started > 900 or (done.is_set() and "seconds" not in fill):
                raise RuntimeError(f"the relay left {left} of {count} unpublished in time")
            time.sleep(0.5)
    published = time.monotonic() - started
    return {"stored": count, "store_seconds": round(fill["seconds"], 2),
            "relay_publish_seconds": round(published, 2), "relay_per_second": round(count / published, 1),
            "resources": meter.result()}


def _drain(ctx: Context, hub: HubStack, count: int, workers: int) -> dict[str, Any]:
    """Starts the workers on a full queue and measures the drain and the workers' memory."""
    ctx.sink.reset()
    started = time.monotonic()
    hub.start_workers(workers, ctx.options.concurrency)
    worker_group = Group("hub workers", [p.pid for p in hub.workers])
    rss: list[tuple[float, int, int]] = []
    with Meter([worker_group, Group("hub api", [p.pid for p in hub.apis]), Group("sink", [ctx.sink.proc.pid]),
                *ctx.server_groups]) as meter:
        last_change, seen = time.monotonic(), -1
        while True:
            stats = ctx.sink.stats()
            now = time.monotonic()
            rss.append((round(now - started, 1), stats["unique"], worker_group.sample() // 1024))
            if stats["unique"] >= count:
                break
            if stats["unique"] != seen:
                seen, last_change = stats["unique"], now
            if now - last_change > 30:
                break
            time.sleep(1.0)
    stats = ctx.sink.stats()
    first, last = stats["first"] or started, stats["last"] or started
    early = [m for _, n, m in rss if n >= count * 0.05] or [0]
    result = {"workers": workers, "concurrency": ctx.options.concurrency, "delivered": stats["unique"],
              "duplicates": stats["duplicates"], "drained": stats["unique"] >= count,
              "per_second": round(stats["unique"] / max(1e-6, last - first), 1),
              "per_second_from_worker_start": round(stats["unique"] / max(1e-6, last - started), 1),
              "worker_rss_mb": {"after_5_percent": early[0], "peak": max(m for _, _, m in rss),
                                "at_end": rss[-1][2]},
              "series_seconds_delivered_rss_mb": rss, "resources": meter.result()}
    hub.stop_workers()
    return result


def backlog(ctx: Context) -> None:
    count = ctx.options.backlog
    print(f"  backlog: {count} deliveries queued with no worker, then drained", flush=True)
    hub = hub_stack(ctx, "hubbacklog", workers=0)
    try:
        queued = _queue_up(ctx, hub, count)
        drained = _drain(ctx, hub, count, ctx.options.workers)
        drained["database"] = hub.counts()
        ctx.save("hub-backlog", {"queued": queued, "drain": drained})
    finally:
        hub.close()


def scaling(ctx: Context) -> None:
    count = ctx.options.scaling_count
    hub = hub_stack(ctx, "hubscale", workers=0)
    runs = []
    try:
        for workers in ctx.options.scaling:
            print(f"  scaling: {count} queued, drained by {workers} worker process(es)", flush=True)
            _queue_up(ctx, hub, count)
            runs.append(_drain(ctx, hub, count, workers))
        ctx.save("hub-scaling", {"queued_per_run": count, "runs": runs})
    finally:
        hub.close()


def peer(ctx: Context) -> None:
    opts = ctx.options
    runs: list[dict[str, Any]] = []
    for prefetch in opts.peer_prefetch:
        for concurrency in opts.peer_concurrency:
            print(f"  peer: prefetch {prefetch}, concurrency {concurrency}, burst of {opts.peer_count}", flush=True)
            stack = PeerStack(ctx.workdir, ctx.broker_url, ctx.sink.url, prefetch, concurrency, opts.peer_pool)
            try:
                result = drive(ctx, stack.name, [stack.url], stack.key, stack.groups(), mode="burst",
                               count=opts.peer_count)
            finally:
                stack.close()
            runs.append({"prefetch_multiplier": prefetch, "concurrency": concurrency, "pool": opts.peer_pool, **result})
    best = max(runs, key=lambda r: r["end_to_end"].get("per_second", 0.0))
    record: dict[str, Any] = {"runs": runs, "best": {k: best[k] for k in ("prefetch_multiplier", "concurrency")}}
    if opts.peer_steady:
        rate = 500.0
        print(f"  peer steady {rate:g} req/s at its best setting", flush=True)
        stack = PeerStack(ctx.workdir, ctx.broker_url, ctx.sink.url, best["prefetch_multiplier"], best["concurrency"],
                          opts.peer_pool)
        try:
            record["steady_500"] = drive(ctx, "peer-steady-500", [stack.url], stack.key, stack.groups(),
                                         mode="rate", count=int(rate * opts.duration), rate=rate)
        finally:
            stack.close()
    ctx.save("peer", record)


def knee(ctx: Context) -> None:
    """The highest steady offered rate at which intake p99 stays within the target: a bisection
    between --knee-low and --knee-high, each step a short open-loop run on the same stack."""
    opts = ctx.options
    low, high, target = opts.knee_low, opts.knee_high, opts.knee_p99_ms
    hub = hub_stack(ctx, "hubknee")
    steps: list[dict[str, Any]] = []
    try:
        groups = hub.groups()
        for _ in range(opts.knee_steps):
            rate = round((low + high) / 2)
            print(f"  knee: {rate} req/s for {opts.knee_duration:g} s (between {low:g} and {high:g})", flush=True)
            result = drive(ctx, f"hub-knee-{rate}", hub.api_urls, hub.key, groups, mode="rate",
                           count=int(rate * opts.knee_duration), rate=rate, hub=hub)
            p99 = result["intake"].get("latency_ms", {}).get("p99")
            ok = p99 is not None and p99 <= target and result["intake"]["accepted"] == result["intake"]["offered"]
            steps.append({"rate": rate, "intake_p99_ms": p99, "within": ok,
                          "e2e_p99_ms": result["end_to_end"].get("latency_ms", {}).get("p99"),
                          "delivered": result["end_to_end"]["completed"], "accepted": result["intake"]["accepted"],
                          "duplicates": result["sink"]["duplicates"]})
            if ok:
                low = rate
            else:
                high = rate
        ctx.save("hub-knee", {"target_p99_ms": target, "knee_per_second": low if any(s["within"] for s in steps) else None,
                              "steps": steps, **_setup(opts)})
    finally:
        hub.close()


def overload(ctx: Context) -> None:
    """Offered far past the knee, from many connections: the api answers what it cannot take in
    time with 503 and Retry-After (HUB_INTAKE_MAX_WAITING) and every submission it took is delivered."""
    opts = ctx.options
    hub = hub_stack(ctx, "huboverload")
    try:
        rate = opts.overload_rate
        print(f"  overload: {rate:g} req/s offered for {opts.knee_duration:g} s from {opts.overload_connections} "
              "connections", flush=True)
        result = drive(ctx, "hub-overload", hub.api_urls, hub.key, hub.groups(), mode="rate",
                       count=int(rate * opts.knee_duration), rate=rate, connections=opts.overload_connections, hub=hub)
        result["shed"] = result["intake"]["errors"].get("HTTP 503", 0)
        ctx.save("hub-overload", {**_setup(opts), "connections": opts.overload_connections, **result})
    finally:
        hub.close()
