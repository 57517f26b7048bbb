"""`make bench`: drives the real hub end to end beside a Celery peer and the broker's own ceiling,
in one run on this machine, and writes bench/results/<UTC timestamp>/ and bench/REPORT.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(REPO))

from bench import durability, machine, report, scenarios  # noqa: E402
from bench.measure import Context  # noqa: E402
from bench.processes import Group, stop_all  # noqa: E402
from bench.sink import Sink  # noqa: E402

SCENARIOS = {
    "ceiling": scenarios.ceilings,
    "steady": scenarios.steady_and_burst,
    "burst": scenarios.burst,
    "backlog": scenarios.backlog,
    "scaling": scenarios.scaling,
    "peer": scenarios.peer,
    "knee": scenarios.knee,
    "overload": scenarios.overload,
}
QUICK = {"duration": 3.0, "burst": 1500, "backlog": 3000, "scaling_count": 1000, "peer_count": 1000,
         "profile_count": 1000, "broker_messages": 2000, "validation_count": 500, "peer_steady": False}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def options(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a smoke run of about 3 minutes: every scenario, small")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"scenarios to run, of: {', '.join(SCENARIOS)}")
    p.add_argument("--rates", type=_floats, default=[250.0, 500.0, 1000.0], help="steady offered rates, req/s")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of each steady rate")
    p.add_argument("--burst", type=int, default=20000, help="submissions in the burst")
    p.add_argument("--backlog", type=int, default=100000, help="deliveries queued for the backlog drain")
    p.add_argument("--scaling", type=_ints, default=[1, 2, 4], help="worker process counts")
    p.add_argument("--scaling-count", type=int, default=10000, help="deliveries queued per scaling run")
    p.add_argument("--knee-low", type=float, default=200.0, help="knee search: a rate known to be within target")
    p.add_argument("--knee-high", type=float, default=2500.0, help="knee search: a rate known to be past it")
    p.add_argument("--knee-steps", type=int, default=5, help="knee search: bisection steps")
    p.add_argument("--knee-duration", type=float, default=10.0, help="seconds of each knee and overload run")
    p.add_argument("--knee-p99-ms", type=float, default=25.0, help="knee search: the intake p99 target, ms")
    p.add_argument("--overload-rate", type=float, default=4000.0, help="offered rate of the overload run, req/s")
    p.add_argument("--overload-connections", type=int, default=1024, help="connections of the overload run")
    p.add_argument("--apis", type=int, default=1, help="hub api processes")
    p.add_argument("--workers", type=int, default=2, help="hub worker processes (steady, burst, backlog)")
    # 16 sending threads per worker: bigger grouped loads and records than 4, and the best drain on 2 cores
    p.add_argument("--concurrency", type=int, default=16, help="hub worker --concurrency")
    p.add_argument("--peer-count", type=int, default=5000, help="submissions per peer setting")
    p.add_argument("--peer-prefetch", type=_ints, default=[1, 16], help="Celery prefetch multipliers")
    p.add_argument("--peer-concurrency", type=_ints, default=[1, 2], help="Celery worker concurrencies")
    p.add_argument("--peer-pool", choices=["prefork", "threads"], default="prefork", help="Celery worker pool")
    p.add_argument("--no-peer-steady", dest="peer_steady", action="store_false",
                   help="skip the peer's steady 500/s run at its best setting")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the py-spy profiled burst")
    p.add_argument("--profile-count", type=int, default=5000, help="submissions in the profiled burst")
    p.add_argument("--broker-messages", type=int, default=10000, help="messages per broker-ceiling figure")
    p.add_argument("--validation-count", type=int, default=2000, help="submissions validated per pass")
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<UTC timestamp>)")
    p.add_argument("--fsync-off", dest="durable", action="store_false",
                   help="PostgreSQL with fsync and full_page_writes off, as the tests run it (default: its durable defaults)")
    p.add_argument("--rabbitmq-nodes", type=_ints, default=[1],
                   help="RabbitMQ nodes: 1 (a single node) or 3 (the fault tests' cluster; quorum queues on all three); "
                        "a list such as 1,3 runs the scenarios on the first and the burst again on each other, and the "
                        "report sets their bursts side by side")
    p.add_argument("--no-copy", dest="copy", action="store_false", help="do not update bench/REPORT.md")
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    nodes = args.rabbitmq_nodes
    if not nodes or any(n < 1 for n in nodes) or len(set(nodes)) != len(nodes):
        p.error(f"--rabbitmq-nodes wants distinct node counts of at least 1, such as 1 or 1,3; got {nodes}")
    if len(nodes) > 1 and not {"burst", "steady"} & set(args.only.split(",")):
        p.error("--rabbitmq-nodes with several counts compares their bursts: --only must include burst or steady")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM like Ctrl-C: unwind through every finally, which stops what was started
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = options(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    from tests.support.servers import PostgresServer, close_all

    started = datetime.now(UTC)
    workdir = opts.out or REPO / "bench" / "results" / started.strftime("%Y%m%dT%H%M%SZ")
    workdir.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()
    print(f"bench: results in {workdir}", flush=True)
    first, *others = opts.rabbitmq_nodes
    rabbit, postgres, sink = _broker(first), PostgresServer(durable=opts.durable), None
    try:
        rabbit.start()
        postgres.start()
        sink = Sink(workdir)
        info = machine.machine(rabbit.url, postgres.url)
        info.update(argv=argv, started=started.strftime("%Y-%m-%d %H:%M"), rabbitmq_nodes=first,
                    rabbitmq_node_counts=opts.rabbitmq_nodes,
                    postgresql_settings=durability.postgres_settings(postgres.url))
        (workdir / "machine.json").write_text(json.dumps(info, indent=2))
        postgres_group = Group("postgresql", postgres.pids())
        ctx = Context(workdir, sink, rabbit.url, postgres, [Group("rabbitmq", rabbit.pids()), postgres_group], opts,
                      broker=rabbit, broker_nodes=first)
        for name in opts.only.split(","):
            print(f"bench: {name} ({time.monotonic() - clock:.0f} s so far)", flush=True)
            _scenario(ctx, name, postgres.url, functools.partial(SCENARIOS[name], ctx))
        for nodes in others:
            # one broker at a time, so an idle one takes no CPU from the other's burst
            rabbit.close()
            rabbit = _broker(nodes).start()
            ctx = dataclasses.replace(ctx, broker_url=rabbit.url, broker=rabbit, broker_nodes=nodes,
                                      server_groups=[Group("rabbitmq", rabbit.pids()), postgres_group])
            print(f"bench: burst on the {ctx.broker_label} ({time.monotonic() - clock:.0f} s so far)", flush=True)
            # the statements are the first burst's again: only the broker differs
            _scenario(ctx, f"burst-rabbitmq-{nodes}", postgres.url, functools.partial(scenarios.cluster_burst, ctx, nodes),
                      statements=False)
        if "errors" in ctx.results:
            ctx.save("errors", ctx.results["errors"])
        info["cpu_check_ms_at_end"] = machine.cpu_check_ms()
        text = report.render(ctx.results, info)
        (workdir / "REPORT.md").write_text(text)
        if opts.copy:
            shutil.copyfile(workdir / "REPORT.md", REPO / "bench" / "REPORT.md")
        print(text, flush=True)
        print(f"bench: done in {time.monotonic() - clock:.0f} s; results in {workdir}", flush=True)
        return 1 if ctx.results.get("errors") else 0
    finally:
        if sink is not None:
            sink.stop()
        stop_all()
        close_all()  # the broker and PostgreSQL, whichever is still open


def _broker(nodes: int) -> Any:
    from tests.support.cluster import RabbitMQCluster
    from tests.support.servers import RabbitMQServer

    return RabbitMQServer() if nodes == 1 else RabbitMQCluster(nodes)


def _scenario(ctx: Context, name: str, database_url: str, run: Callable[[], None], statements: bool = True) -> None:
    """Runs one scenario; a failure is recorded for the report and the run goes on."""
    counting = statements and durability.statements_reset(database_url)
    try:
        run()
        if counting and name != "ceiling":
            ctx.save(f"{name}-statements", {"top": durability.top_statements(database_url)})
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed scenario is reported; the others still run
        traceback.print_exc()
        ctx.results.setdefault("errors", {})[name] = f"{type(exc).__name__}: {str(exc)[:300]}"


if __name__ == "__main__":
    sys.exit(main())
