"""The Markdown report of one bench run: the machine, hub vs peer vs ceiling with ratios, the
targets of issue 6, every scenario's figures, where the hub spends its time, and how to rerun.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HUB_GROUPS = ("hub api", "hub workers")
PEER_GROUPS = ("peer api", "peer worker")


def _get(data: Any, *path: Any, default: Any = None) -> Any:
    for key in path:
        if (isinstance(data, dict) and key in data) or (isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)):
            data = data[key]
        else:
            return default
    return data


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and b):
        return "–"
    return f"{a / b:.2f}×" if a / b >= 0.1 else f"{a / b:.2g}×"


def _cpu_ms_per(result: dict[str, Any], groups: tuple[str, ...], count: Any) -> float | None:
    found = [_get(result, "resources", "groups", g, "cpu_seconds") for g in groups]
    if not count or any(v is None for v in found):
        return None
    return 1000 * float(sum(found)) / float(count)


def _peak(result: dict[str, Any], group: str) -> Any:
    return _get(result, "resources", "groups", group, "peak_rss_mb_max_process")


def summary_rows(r: dict[str, Any]) -> list[list[str]]:
    burst, peer_best = r.get("hub-burst", {}), _best_peer(r)
    steady = r.get("hub-steady-500", {})
    peer_steady = _get(r, "peer", "steady_500", default={})
    broker = r.get("broker", {})
    relay_style = min(_get(broker, "publish_kombu_confirm_each", "per_second", default=0),
                      _get(broker, "consume_kombu_ack_each_prefetch_16", "per_second", default=0)) or None
    batched = min(_get(broker, "publish_amqp_confirm_batch_1000", "per_second", default=0),
                  _get(broker, "consume_pika_ack_multiple_50_prefetch_500", "per_second", default=0)) or None
    hub_e2e, peer_e2e = _get(burst, "end_to_end", "per_second"), _get(peer_best, "end_to_end", "per_second")
    hub_in, peer_in = _get(burst, "intake", "per_second"), _get(peer_best, "intake", "per_second")
    harness = _get(r, "harness", "per_second")
    val = r.get("validation", {})
    rows = [
        ["end-to-end completions/s (burst)", _num(hub_e2e), _num(peer_e2e),
         f"{_num(relay_style)} (confirm each) / {_num(batched)} (batched)", _ratio(hub_e2e, peer_e2e),
         _ratio(hub_e2e, relay_style)],
        ["intake accepted/s (burst)", _num(hub_in), _num(peer_in), f"{_num(harness)} (load generator → sink)",
         _ratio(hub_in, peer_in), _ratio(hub_in, harness)],
        ["intake p50 / p99 ms at 500/s offered",
         f"{_num(_get(steady, 'intake', 'latency_ms', 'p50'), 1)} / {_num(_get(steady, 'intake', 'latency_ms', 'p99'), 1)}",
         f"{_num(_get(peer_steady, 'intake', 'latency_ms', 'p50'), 1)} / {_num(_get(peer_steady, 'intake', 'latency_ms', 'p99'), 1)}",
         "–", "–", "–"],
        ["end-to-end p50 / p99 ms at 500/s offered",
         f"{_num(_get(steady, 'end_to_end', 'latency_ms', 'p50'), 1)} / {_num(_get(steady, 'end_to_end', 'latency_ms', 'p99'), 1)}",
         f"{_num(_get(peer_steady, 'end_to_end', 'latency_ms', 'p50'), 1)} / {_num(_get(peer_steady, 'end_to_end', 'latency_ms', 'p99'), 1)}",
         "–", "–", "–"],
        ["duplicates at the sink (burst)", _num(_get(burst, "sink", "duplicates")),
         _num(_get(peer_best, "sink", "duplicates")), "–", "–", "–"],
        ["validation µs per submission", f"{_num(val.get('hub_form_errors_us'), 1)} (jsonschema-rs, hub Form.errors)",
         f"{_num(val.get('python_jsonschema_iter_errors_us'), 1)} (python-jsonschema)",
         f"{_num(val.get('jsonschema_rs_is_valid_us'), 1)} (jsonschema-rs is_valid)",
         _ratio(val.get("python_jsonschema_iter_errors_us"), val.get("hub_form_errors_us")) + " faster", "–"],
        ["CPU ms per submission, app processes (burst)",
         _num(_cpu_ms_per(burst, HUB_GROUPS, _get(burst, "end_to_end", "completed")), 2),
         _num(_cpu_ms_per(peer_best, PEER_GROUPS, _get(peer_best, "end_to_end", "completed")), 2), "–", "–", "–"],
        ["CPU ms per submission incl. RabbitMQ + PostgreSQL",
         _num(_cpu_ms_per(burst, (*HUB_GROUPS, "rabbitmq", "postgresql"), _get(burst, "end_to_end", "completed")), 2),
         _num(_cpu_ms_per(peer_best, (*PEER_GROUPS, "rabbitmq", "postgresql"), _get(peer_best, "end_to_end", "completed")), 2),
         "–", "–", "–"],
    ]
    return rows


def durable_target_rows(r: dict[str, Any]) -> list[list[str]]:
    """The targets of issue 17 (durable speed), each with its figure from this run."""
    burst, steady1k = r.get("hub-burst", {}), r.get("hub-steady-1000", {})
    e2e, peer = _get(burst, "end_to_end", "per_second"), _get(_best_peer(r), "end_to_end", "per_second")
    lost = _get(burst, "end_to_end", "missing")
    dups = _get(burst, "sink", "duplicates")
    in99, e99 = _get(steady1k, "intake", "latency_ms", "p99"), _get(steady1k, "end_to_end", "latency_ms", "p99")
    knee = _get(r, "hub-knee", "knee_per_second")
    cpu = _cpu_ms_per(burst, (*HUB_GROUPS, "rabbitmq", "postgresql"), _get(burst, "end_to_end", "completed"))
    drain = _get(r, "hub-backlog", "drain", default={})
    rss = drain.get("worker_rss_mb", {})
    flat = bool(rss) and rss.get("at_end", 0) <= 1.2 * max(1, rss.get("after_5_percent", 0))
    shed = _get(r, "hub-overload", "shed")

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "**missed**")

    return [
        ["burst end to end ≥ 2,500/s, 0 duplicates, 0 lost", f"{_num(e2e)}/s, {_num(dups)} duplicates, {_num(lost)} lost",
         verdict(None if e2e is None else e2e >= 2500 and dups == 0 and lost == 0)],
        ["steady 1,000/s: intake p99 ≤ 25 ms", f"{_num(in99, 1)} ms", verdict(None if in99 is None else in99 <= 25)],
        ["steady 1,000/s: end-to-end p99 ≤ 250 ms", f"{_num(e99, 1)} ms", verdict(None if e99 is None else e99 <= 250)],
        ["the knee (highest rate with intake p99 ≤ 25 ms), its own figure", f"{_num(knee)}/s", verdict(None if knee is None else True)],
        ["all-in CPU ≤ 0.7 ms per submission (app, PostgreSQL, RabbitMQ)", f"{_num(cpu, 2)} ms",
         verdict(None if cpu is None else cpu <= 0.7)],
        ["100,000 backlog drains at ≥ 5,000/s, flat memory", f"{_num(drain.get('per_second'))}/s; RSS "
         f"{rss.get('after_5_percent', '–')} → {rss.get('at_end', '–')} MB",
         verdict(None if not drain else drain.get("per_second", 0) >= 5000 and flat)],
        ["≥ 3× the Celery peer in the same run", f"{_ratio(e2e, peer)}", verdict(None if not (e2e and peer) else e2e >= 3 * peer)],
        ["past the knee: 503 with Retry-After, nothing accepted lost", f"{_num(shed)} shed; delivered "
         f"{_num(_get(r, 'hub-overload', 'end_to_end', 'completed'))} of {_num(_get(r, 'hub-overload', 'intake', 'accepted'))}",
         verdict(None if shed is None else _get(r, "hub-overload", "end_to_end", "missing") == 0)],
    ]


def _best_peer(r: dict[str, Any]) -> dict[str, Any]:
    runs = _get(r, "peer", "runs", default=[])
    return max(runs, key=lambda x: _get(x, "end_to_end", "per_second", default=0)) if runs else {}


def target_rows(r: dict[str, Any]) -> list[list[str]]:
    burst, steady1k, steady500 = r.get("hub-burst", {}), r.get("hub-steady-1000", {}), r.get("hub-steady-500", {})
    e2e = _get(burst, "end_to_end", "per_second")
    peer = _get(_best_peer(r), "end_to_end", "per_second")
    p99 = _get(steady500, "intake", "latency_ms", "p99")
    val = _get(r, "validation", "hub_form_errors_us")
    drain = _get(r, "hub-backlog", "drain", default={})
    rss = drain.get("worker_rss_mb", {})
    flat = bool(rss) and rss.get("at_end", 0) <= 1.2 * max(1, rss.get("after_5_percent", 0))
    dups = sum(_get(r, k, "sink", "duplicates", default=0) for k in r if k.startswith("hub-"))
    kept_up = _get(steady1k, "end_to_end", "per_second")

    def verdict(ok: bool | None) -> str:
        return "–" if ok is None else ("met" if ok else "**missed**")

    return [
        ["≥ 1,000 submissions/s end to end", f"burst {_num(e2e)}/s; steady 1,000/s offered → {_num(kept_up)}/s",
         verdict(None if e2e is None else e2e >= 1000)],
        ["0 duplicates at the sink", f"{dups} across hub scenarios", verdict(dups == 0)],
        ["≥ 2× the Celery peer end to end", f"{_ratio(e2e, peer)} ({_num(e2e)} vs {_num(peer)}/s)",
         verdict(None if not (e2e and peer) else e2e >= 2 * peer)],
        ["intake p99 ≤ 25 ms at 500 req/s offered", f"{_num(p99, 1)} ms", verdict(None if p99 is None else p99 <= 25)],
        ["validation ≤ 10 µs per submission", f"{_num(val, 1)} µs", verdict(None if val is None else val <= 10)],
        ["backlog drains at ≥ 1,000/s", f"{_num(drain.get('per_second'))}/s over {_num(drain.get('delivered'))}",
         verdict(None if not drain else drain.get("per_second", 0) >= 1000)],
        ["worker RSS flat while draining", f"{rss.get('after_5_percent', '–')} → peak {rss.get('peak', '–')} → "
         f"end {rss.get('at_end', '–')} MB", verdict(None if not rss else flat)],
    ]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(row) + " |" for row in rows)]


def _load_row(label: str, x: dict[str, Any], groups: tuple[str, ...]) -> list[str]:
    lat, e2e = _get(x, "intake", "latency_ms", default={}), _get(x, "end_to_end", default={})
    return [label, _num(_get(x, "intake", "per_second")), _num(lat.get("p50"), 1), _num(lat.get("p90"), 1),
            _num(lat.get("p99"), 1), _num(lat.get("max"), 1), _num(e2e.get("per_second")),
            _num(_get(e2e, "latency_ms", "p50"), 1), _num(_get(e2e, "latency_ms", "p99"), 1),
            f"{_num(e2e.get('completed'))}/{_num(_get(x, 'intake', 'accepted'))}", _num(_get(x, "sink", "duplicates")),
            " / ".join(_num(_get(x, "resources", "groups", g, "cpu_seconds"), 1)
                       for g in (*groups, "postgresql", "rabbitmq")),
            " / ".join(_num(_peak(x, g)) for g in groups),
            _num(_get(x, "resources", "groups", "postgresql", "processes")),
            _num(_get(x, "written", "wal_bytes_per_submission")),
            _num(_get(x, "written", "rabbitmq_bytes_per_submission")),
            _num(_get(x, "resources", "other_cpu_seconds"), 1)]


LOAD_HEAD = ["run", "intake/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "e2e/s", "e2e p50 ms", "e2e p99 ms",
             "delivered", "dups", "CPU s (api / workers / PG / RabbitMQ)", "peak RSS MB per process (api / worker)",
             "PG procs seen", "WAL B/submission", "RabbitMQ disk B/submission", "other CPU s"]


def _pg_settings(info: dict[str, Any]) -> str:
    settings = info.get("postgresql_settings") or {}
    if not settings:
        return "settings not recorded"
    durable = settings.get("fsync") == "on" and settings.get("synchronous_commit") == "on"
    return ("durable: " if durable else "NOT durable: ") + ", ".join(f"{k}={v}" for k, v in settings.items())


def render(r: dict[str, Any], info: dict[str, Any]) -> str:
    argv, started = info.get("argv", []), info.get("started", "?")
    lines = [f"# Benchmark: the hub vs a Celery peer vs the broker's ceiling ({'quick' if '--quick' in argv else 'full'} run)",
             "", f"Run {started} UTC with `python -m bench.run {' '.join(argv)}`.", "",
             f"Machine: {info.get('cores')} cores ({info.get('cpu')}), {info.get('memory_gib')} GiB, Linux "
             f"{info.get('kernel')}, Python {info.get('python')}, RabbitMQ {info.get('rabbitmq')} "
             f"({'single node' if info.get('rabbitmq_nodes', 1) == 1 else str(info['rabbitmq_nodes']) + '-node cluster'}, "
             f"quorum queues), PostgreSQL {info.get('postgresql')} ({_pg_settings(info)}), everything on loopback. "
             f"Load average at start: {', '.join(f'{v:.2f}' for v in info.get('load_average_at_start', []))}. "
             f"Hub code: {info.get('hub_tree', 'unknown')}.",
             "", "Libraries: " + ", ".join(f"{k} {v}" for k, v in info.get("libraries", {}).items()) + ".", "",
             "**Noise:** the machine is shared and has 2 cores; the load generator, the sink, RabbitMQ and "
             "PostgreSQL share them with the process under test. \"other CPU s\" is CPU used during a run by "
             "processes the bench did not start: where it is large, the figures of that run are depressed. "
             "The machine is also a virtual one whose speed follows its host's load: a fixed pure-Python workload "
             f"took {info.get('cpu_check_ms_at_start', '?')} ms of CPU at the start of this run and "
             f"{info.get('cpu_check_ms_at_end', '?')} ms at the end (`bench/machine.py` `cpu_check_ms`); compare runs "
             "only when these agree.", "",
             "## Hub vs peer vs ceiling", ""]
    lines += _table(["figure", "hub", "Celery peer (best)", "ceiling", "hub / peer", "hub / ceiling"], summary_rows(r))
    lines += ["", "## Targets of issue 6", ""]
    lines += _table(["target", "measured", "verdict"], target_rows(r))
    lines += ["", "## Targets of issue 17 (durable)", ""]
    lines += _table(["target", "measured", "verdict"], durable_target_rows(r))
    steady = sorted((k for k in r if k.startswith("hub-steady-")), key=lambda k: float(k.rsplit("-", 1)[1]))
    if steady or "hub-burst" in r:
        x = r.get("hub-burst") or r[steady[0]]
        lines += ["", "## The hub under load", "",
                  f"{_get(x, 'setup', 'api_processes')} `hub api` process(es) (relay inside), "
                  f"{_get(x, 'setup', 'worker_processes')} `hub worker` process(es) × concurrency "
                  f"{_get(x, 'setup', 'worker_concurrency')}; open loop for steady runs (latency counted from when a "
                  "request was due), 64 connections; every submission sends an Idempotency-Key. \"PG procs seen\" counts "
                  "the PostgreSQL processes that lived during the run: far more than the pools' sizes means "
                  "connections are being opened and closed (churn).", ""]
        rows = [_load_row(f"steady {k.rsplit('-', 1)[1]}/s", r[k], HUB_GROUPS) for k in steady]
        if "hub-burst" in r:
            rows.append(_load_row(f"burst {_get(r, 'hub-burst', 'intake', 'offered')}", r["hub-burst"], HUB_GROUPS))
        lines += _table(LOAD_HEAD, rows)
    lines += _rabbitmq_nodes(r, info)
    lines += _knee(r) + _overload(r) + _backlog(r) + _scaling(r) + _peer(r) + _broker(r) + _profile(r) + _statements(r)
    errors = r.get("errors")
    if errors:
        lines += ["", "## Scenarios that failed", "", *(f"- {name}: {msg}" for name, msg in errors.items())]
    lines += ["", *RERUN]
    return "\n".join(lines) + "\n"


def _nodes_label(nodes: int) -> str:
    return "single node" if nodes == 1 else f"{nodes}-node cluster"


def _rabbitmq_nodes(r: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """The same burst on each RabbitMQ of `--rabbitmq-nodes 1,3`, side by side (first column: the
    broker every other scenario ran on)."""
    counts = info.get("rabbitmq_node_counts") or []
    if len(counts) < 2:
        return []
    runs = [r.get("hub-burst", {}), *(r.get(f"hub-burst-rabbitmq-{n}", {}) for n in counts[1:])]
    all_in = (*HUB_GROUPS, "rabbitmq", "postgresql")

    def per(x: dict[str, Any], groups: tuple[str, ...]) -> float | None:
        return _cpu_ms_per(x, groups, _get(x, "end_to_end", "completed"))

    def replicas(x: dict[str, Any], nodes: int) -> str:
        members = _get(x, "rabbitmq", "members")
        if members is None:
            return "1 (one node)" if nodes == 1 and x else "–"
        leader = str(_get(x, "rabbitmq", "leader", default="?")).split("@")[0]
        return f"{len(members)} of {nodes} nodes, leader {leader}"

    figures: list[tuple[str, Any, int]] = [
        ("end-to-end completions/s", lambda x: _get(x, "end_to_end", "per_second"), 0),
        ("intake accepted/s", lambda x: _get(x, "intake", "per_second"), 0),
        ("intake p99 ms", lambda x: _get(x, "intake", "latency_ms", "p99"), 1),
        ("end-to-end p99 ms", lambda x: _get(x, "end_to_end", "latency_ms", "p99"), 1),
        ("CPU ms per submission, app processes", lambda x: per(x, HUB_GROUPS), 2),
        ("CPU ms per submission incl. RabbitMQ (all its nodes) + PostgreSQL", lambda x: per(x, all_in), 2),
        ("RabbitMQ CPU ms per submission (all its nodes)", lambda x: per(x, ("rabbitmq",)), 2),
        ("RabbitMQ disk bytes per submission (all its nodes)",
         lambda x: _get(x, "written", "rabbitmq_bytes_per_submission"), 0),
        ("PostgreSQL WAL bytes per submission", lambda x: _get(x, "written", "wal_bytes_per_submission"), 0),
    ]
    rows = []
    for label, value, digits in figures:
        found = [value(x) for x in runs]
        rows.append([label, *(_num(v, digits) for v in found), *(_ratio(v, found[0]) for v in found[1:])])
    dashes = ["–"] * (len(counts) - 1)
    rows += [
        ["duplicates / lost at the sink", *(f"{_num(_get(x, 'sink', 'duplicates'))} / "
                                            f"{_num(_get(x, 'end_to_end', 'missing'))}" for x in runs), *dashes],
        ["quorum queue replicated on", *(replicas(x, n) for x, n in zip(runs, counts)), *dashes],
        ["load average at the burst's start",
         *(", ".join(f"{v:.2f}" for v in _get(x, "load_average_at_start", default=[])) or "–" for x in runs), *dashes],
        ["`cpu_check_ms` at the burst's start", *(_num(_get(x, "cpu_check_ms"), 1) for x in runs), *dashes],
        ["other CPU s", *(_num(_get(x, "resources", "other_cpu_seconds"), 1) for x in runs), *dashes],
    ]
    names = [_nodes_label(n) for n in counts]
    burst = _num(_get(runs[0], "intake", "offered") or _get(runs[1], "intake", "offered"))
    return ["", f"## RabbitMQ: {' vs '.join(names)} (burst of {burst})", "",
            "The same burst on the same hub settings and durable PostgreSQL; only the broker differs. The "
            f"{names[1]}'s burst runs after every other scenario, with the single node stopped, on the fault "
            "tests' cluster (`tests/support/cluster.py`: local nodes on private ports) whose quorum queue has a "
            "Raft member on every node, so a publish is confirmed once a majority has written it. RabbitMQ's CPU "
            "and disk bytes are summed over its nodes. The bursts run minutes apart on a shared machine: compare "
            "them only when their load average, `cpu_check_ms` and other CPU agree.", "",
            *_table(["figure", *names, *(f"{name} / {names[0]}" for name in names[1:])], rows)]


def _backlog(r: dict[str, Any]) -> list[str]:
    b = r.get("hub-backlog")
    if not b:
        return []
    q, d = b["queued"], b["drain"]
    rss = d["worker_rss_mb"]
    return ["", "## Backlog drain", "",
            f"{_num(q['stored'])} submissions stored with no worker running (the back office unreachable), in "
            f"{q['store_seconds']} s; the relay published them all in {q['relay_publish_seconds']} s "
            f"(**{_num(q['relay_per_second'])}/s**). Then {d['workers']} worker process(es) × {d['concurrency']} drained "
            f"{_num(d['delivered'])} at **{_num(d['per_second'])}/s** ({_num(d['per_second_from_worker_start'])}/s "
            f"counting worker start-up), {d['duplicates']} duplicates. Worker RSS (all worker processes): "
            f"{rss['after_5_percent']} MB after 5 %, peak {rss['peak']} MB, {rss['at_end']} MB at the end.",
            "", f"Database after the drain: {d.get('database')}."]


def _scaling(r: dict[str, Any]) -> list[str]:
    s = r.get("hub-scaling")
    if not s:
        return []
    rows = [[str(x["workers"]), str(x["concurrency"]), _num(x["per_second"]),
             _num(_get(x, "resources", "groups", "hub workers", "cpu_seconds"), 1),
             _num(1000 * _get(x, "resources", "groups", "hub workers", "cpu_seconds", default=0) / max(1, x["delivered"]), 2),
             _num(_get(x, "resources", "groups", "postgresql", "cpu_seconds"), 1), _num(x["worker_rss_mb"]["peak"]),
             str(x["duplicates"]), _num(_get(x, "resources", "other_cpu_seconds"), 1)] for x in s["runs"]]
    return ["", f"## Scaling: a queue of {_num(s['queued_per_run'])} drained by 1, 2, 4 worker processes", "",
            *_table(["workers", "concurrency", "drain/s", "worker CPU s", "worker CPU ms/delivery",
                     "PostgreSQL CPU s", "worker RSS MB (sum)", "dups", "other CPU s"], rows)]


def _peer(r: dict[str, Any]) -> list[str]:
    p = r.get("peer")
    if not p:
        return []
    rows = [_load_row(f"prefetch {x['prefetch_multiplier']} × concurrency {x['concurrency']}", x, PEER_GROUPS)
            for x in p["runs"]]
    if "steady_500" in p:
        rows.append(_load_row("best, steady 500/s", p["steady_500"], PEER_GROUPS))
    return ["", "## The Celery peer", "",
            "FastAPI (one uvicorn process, sync endpoint) + python-jsonschema (with `regex` for the schema's `\\p{L}` "
            f"patterns) + Celery ({_get(p, 'runs', 0, 'pool')} pool, classic durable queue, `acks_late`, `task_publish_retry`, "
            "`confirm_publish`) + a task that POSTs to the same sink; it stores nothing in a database. "
            f"Burst of {_num(_get(p, 'runs', 0, 'intake', 'offered'))} per setting.", "",
            *_table(LOAD_HEAD, rows)]


def _broker(r: dict[str, Any]) -> list[str]:
    b, v = r.get("broker"), r.get("validation")
    out: list[str] = []
    if b:
        rows = [[k, _num(x["messages"]), _num(x["per_second"])] for k, x in b.items() if isinstance(x, dict)]
        out += ["", f"## Broker ceiling ({b['message_bytes']}-byte persistent messages, {b['queue']})", "",
                *_table(["operation", "messages", "per second"], rows)]
    if v:
        rows = [[k.removesuffix("_us"), _num(x, 2)] for k, x in v.items() if k.endswith("_us")]
        out += ["", "## Validation, µs per valid submission (best of 5 passes)", "", *_table(["validator", "µs"], rows)]
    return out


def _knee(r: dict[str, Any]) -> list[str]:
    k = r.get("hub-knee")
    if not k:
        return []
    knee = k.get("knee_per_second")
    out = ["", f"## The knee: highest steady rate with intake p99 ≤ {k['target_p99_ms']:g} ms", "",
           f"**{_num(knee)} submissions/s**" if knee else "**not found**: even the lowest rate tried missed the target",
           "(bisection; each step an open-loop run on the same stack).", ""]
    out += _table(["offered/s", "intake p99 ms", "within", "e2e p99 ms", "delivered/accepted", "dups"],
                  [[_num(x["rate"]), _num(x["intake_p99_ms"], 1), "yes" if x["within"] else "no",
                    _num(x["e2e_p99_ms"], 1), f"{_num(x['delivered'])}/{_num(x['accepted'])}", _num(x["duplicates"])]
                   for x in k["steps"]])
    return out


def _overload(r: dict[str, Any]) -> list[str]:
    o = r.get("hub-overload")
    if not o:
        return []
    lat = _get(o, "intake", "latency_ms", default={})
    service = _get(o, "intake", "service_ms", default={})
    return ["", "## Overload: load shed with 503", "",
            f"{_num(_get(o, 'intake', 'offered_per_second'))} req/s offered from {o.get('connections')} connections: "
            f"{_num(_get(o, 'intake', 'accepted'))} accepted ({_num(_get(o, 'intake', 'per_second'))}/s), "
            f"**{_num(o.get('shed'))} answered 503 with Retry-After**, other errors "
            f"{ {k: v for k, v in _get(o, 'intake', 'errors', default={}).items() if k != 'HTTP 503'} or 'none'}; "
            f"accepted answered in p50 {_num(service.get('p50'), 1)} / p99 {_num(service.get('p99'), 1)} ms from being written to the socket "
            f"(p99 {_num(lat.get('p99'), 1)} ms from when due, with any wait for one of the generator's connections); delivered {_num(_get(o, 'end_to_end', 'completed'))} of "
            f"{_num(_get(o, 'intake', 'accepted'))} accepted, {_num(_get(o, 'sink', 'duplicates'))} duplicates."]


def _statements(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key in sorted(k for k in r if k.endswith("-statements")):
        top = r[key].get("top") or []
        if not top:
            continue
        if not out:
            out = ["", "## PostgreSQL's costliest statements (pg_stat_statements, per scenario)", ""]
        out += [f"Scenario `{key.removesuffix('-statements')}`:", ""]
        out += _table(["statement", "calls", "total ms", "ms per call", "rows", "WAL bytes"],
                      [[f"`{x['query'].replace('|', '/')}`", _num(x["calls"]), _num(x["total_ms"], 1),
                        _num(x["ms_per_call"], 3), _num(x["rows"]), _num(x["wal_bytes"])] for x in top])
        out.append("")
    return out


def _profile(r: dict[str, Any]) -> list[str]:
    p = r.get("hub-profile")
    if not p:
        return []
    out = ["", "## Where the hub spends its time (py-spy, threads holding the GIL, during a profiled burst)", ""]
    for name, s in p["processes"].items():
        if not s.get("samples"):
            out.append(f"- {name}: no samples")
            continue
        out += [f"**{name}** ({_num(s['samples'])} samples holding the GIL):", "",
                "- by library (leaf-most known frame): " + ", ".join(f"{n} {v}%" for n, v in s["by_library_percent"]),
                "- top self: " + "; ".join(f"`{n}` {v}%" for n, v in s["self_percent"][:8]),
                "- hub functions, inclusive: " + "; ".join(f"`{n}` {v}%" for n, v in s["hub_inclusive_percent"][:8]), ""]
    return out


RERUN = [
    "## How to rerun", "",
    "```sh",
    "make bench                          # the full run (about 5 minutes on 2 cores)",
    "make bench BENCH_ARGS=--quick       # a smoke run of about 3 minutes",
    "make bench BENCH_ARGS='--only steady,peer --duration 10'",
    ".venv/bin/python -m bench.run --help   # every option",
    "```", "",
    "It starts a private RabbitMQ node and PostgreSQL (as the tests do), the hub's own `hub api` and "
    "`hub worker` processes, the sink, the load generator and the Celery peer, all on loopback, and stops "
    "every process it started. Each run writes `bench/results/<UTC timestamp>/` (one JSON file per scenario, "
    "this report as REPORT.md, the processes' logs and py-spy's raw stacks) and copies the report to "
    "`bench/REPORT.md`. Close other heavy work first: on 2 shared cores the figures move with the load.",
]


def main() -> None:
    """`python -m bench.report RESULTS_DIR`: renders a results folder's report again (to stdout)."""
    folder = Path(sys.argv[1])
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if p.stem != "machine"}
    print(render(results, json.loads((folder / "machine.json").read_text())), end="")


if __name__ == "__main__":
    main()
