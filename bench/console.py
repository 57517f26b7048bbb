"""`python -m bench.console`: the staff console's pages with 1,000,000 submissions in PostgreSQL
(issue 15). Seeds a durable PostgreSQL with COPY (submissions over the last 90 days, one or two
deliveries each, a few percent parked or retrying), then asks each page through the real app
(in process, signed in as a member of staff) and reports p50/p95 per page, the statements each
page ran and their plans (EXPLAIN ANALYZE), into bench/results/console-<UTC>/ and stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS_MS = {"dashboard": 300.0, "search": 300.0, "lookup": 50.0}


class PlaceholderEnv(Mapping[str, str]):
    """The demo configuration's secrets and URLs, none of which a page calls."""

    def __getitem__(self, key: str) -> str:
        if key.endswith("_URL"):
            return "http://127.0.0.1:9"
        if key.endswith("_HOST"):
            return "127.0.0.1"
        if key.endswith("_PORT"):
            return "9"
        return "bench-placeholder-" + key.lower()

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def seed(engine: Any, runtime: Any, count: int, rng: random.Random) -> dict[str, Any]:
    """COPY `count` submissions and their deliveries; returns what a page can be asked for."""
    from sqlalchemy import text

    config = runtime.config
    plan: list[tuple[str, str, list[str], str]] = []  # tenant, form, connectors, prefix
    for tenant in config.tenants.values():
        for route in config.routes:
            if ("*" in route.tenants or tenant.id in route.tenants) and tenant.offers(route.form):
                plan.append((tenant.id, route.form, [t.connector for t in route.to], tenant.reference_prefix))
    client = {t: next(c.id for c in config.clients.values() if c.tenant == t) for t in config.tenants}
    sealed = runtime.sealer.seal({"name": "Bench Resident", "email": "bench@example.org", "details": "x" * 300})
    now = datetime.now(UTC)
    picked: dict[str, Any] = {"picks": []}
    every = max(1, count // 25)
    started = time.monotonic()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY submissions (id, reference, tenant, client_id, form_id, form_version, payload, "
                      "received_at, idempotency_key, body_sha256) FROM STDIN") as copy:
            deliveries: list[tuple[Any, ...]] = []
            for i in range(1, count + 1):
                tenant, form, connectors, prefix = plan[i % len(plan)]
                received = now - timedelta(seconds=rng.random() * 90 * 86400)
                reference = f"{prefix}-{i:010d}"
                key = f"portal-{i:08x}"
                copy.write_row((i, reference, tenant, client[tenant], form, 1, sealed, received, key, "0" * 64))
                for connector in connectors:
                    roll = rng.random()
                    state = "delivered" if roll < 0.95 else "retrying" if roll < 0.97 else "parked" if roll < 0.99 else "pending"
                    done = received + timedelta(seconds=0.05 + rng.random() * 3)
                    external = f"BO-{i}-{connector}" if state == "delivered" else None
                    deliveries.append((tenant, connector, state, 1 if state == "delivered" else 3,
                                       "HTTP 503 from the back office" if state in ("parked", "retrying") else None,
                                       external, i, received, done))
                if i % every < len(plan):  # a run of every tenant and form
                    picked["picks"].append({"reference": reference, "portal_reference": key, "tenant": tenant,
                                            "back_office_reference": deliveries[-1][5]})
        with cur.copy("COPY deliveries (submission_id, tenant, connector, state, attempts, attempts_base, last_error, "
                      "external_reference, created_at, updated_at) FROM STDIN") as copy:
            for tenant, connector, state, attempts, error, external, sid, received, done in deliveries:
                copy.write_row((sid, tenant, connector, state, attempts, 0, error, external, received, done))
        cur.execute("SELECT setval('submissions_id_seq', %s)", (count,))
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # as autovacuum leaves a table in use: statistics, and the visibility map index-only scans need
        conn.execute(text("VACUUM ANALYZE submissions"))
        conn.execute(text("VACUUM ANALYZE deliveries"))
        sizes = {name: conn.execute(text(f"SELECT pg_size_pretty(pg_total_relation_size('{name}'))")).scalar_one()
                 for name in ("submissions", "deliveries")}
        picked["deliveries"] = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
    picked.update(seed_seconds=round(time.monotonic() - started, 1), sizes=sizes,
                  forms=sorted({form for _, form, _, _ in plan}))
    return picked


class Statements:
    """Records the statements (and their parameters) run while a page is asked, to EXPLAIN them."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.seen: list[tuple[str, Any]] = []
        self.on = False

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if self.on and statement.lstrip().upper().startswith("SELECT"):
                self.seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)

    def explain(self, engine: Any) -> list[dict[str, Any]]:
        plans = []
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, parameters in self.seen:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + statement, parameters)
                lines = [row[0] for row in cur.fetchall()]
                plans.append({"statement": " ".join(statement.split())[:400], "plan": lines,
                              "execution_ms": _execution_ms(lines)})
            raw.rollback()
        finally:
            raw.close()
        return plans


def _execution_ms(lines: list[str]) -> float | None:
    for line in lines:
        if line.startswith("Execution Time:"):
            return float(line.split()[2])
    return None


def mine(picked: dict[str, Any], tenant: str) -> dict[str, list[str]]:
    """The picked references of submissions `tenant` may see (all of them for "*")."""
    picks = [p for p in picked["picks"] if tenant == "*" or p["tenant"] == tenant]
    return {kind + "s": [p[kind] for p in picks if p[kind]]
            for kind in ("reference", "portal_reference", "back_office_reference")}


def pages(picked: dict[str, Any], tenant_forms: list[str]) -> dict[str, tuple[str, list[str]]]:
    today = datetime.now(UTC).date()
    form = tenant_forms[0]
    return {
        "dashboard": ("dashboard", ["/console"]),
        "search: first page, no filter": ("search", ["/console/submissions"]),
        "search: by form": ("search", [f"/console/submissions?form={form}"]),
        "search: parked": ("search", ["/console/submissions?state=parked"]),
        "search: last 7 days": ("search", [f"/console/submissions?received_from={today - timedelta(days=7)}"
                                           f"&received_to={today}"]),
        "search: by reference": ("lookup", [f"/console/submissions?reference={r}" for r in picked["references"]]),
        "search: by portal reference": ("lookup", [f"/console/submissions?portal_reference={r}"
                                                   for r in picked["portal_references"]]),
        "search: by back-office reference": ("lookup", [f"/console/submissions?back_office_reference={r}"
                                                        for r in picked["back_office_references"]]),
        "submission detail (reference lookup)": ("lookup", [f"/console/submissions/{r}" for r in picked["references"]]),
        "parked deliveries": ("search", ["/console/deliveries"]),
        "savings (the last 12 months)": ("search", ["/console/savings"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    p.add_argument("--submissions", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=30, help="timed requests per page (after 3 warm-ups)")
    p.add_argument("--staff", default="westvale-admin", help="who asks: a council's staff member (config/clients.yaml)")
    p.add_argument("--out", type=Path)
    opts = p.parse_args(argv)

    from starlette.testclient import TestClient

    from hub.api.app import create_app
    from hub.auth import sessions
    from hub.config.settings import Settings
    from hub.console.web import COOKIE
    from hub.runtime import Runtime
    from hub.store.migrate import upgrade
    from tests.support.servers import PostgresServer, close_all

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = opts.out or REPO / "bench" / "results" / f"console-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(durable=True)
    try:
        postgres.start()
        url = postgres.create_database("console")
        settings = Settings(database_url=url, broker_url="memory://", data_dir=out / "data")
        runtime = Runtime.build(settings, PlaceholderEnv())
        upgrade(runtime.engine)
        print(f"bench.console: seeding {opts.submissions:,} submissions with COPY", flush=True)
        picked = seed(runtime.engine, runtime, opts.submissions, random.Random(15))
        print(f"  seeded in {picked['seed_seconds']} s: {picked['sizes']}", flush=True)
        staff = runtime.config.staff[opts.staff]
        secret = sessions.session_secret(settings)
        session = sessions.issue_console(staff.id, secret, 3600, 8 * 3600)
        recorder = Statements(runtime.engine)
        tenant_forms = [f for f in picked["forms"] if staff.tenant == "*" or runtime.config.tenants[staff.tenant].offers(f)]
        results: dict[str, Any] = {}
        app = create_app(runtime)
        with TestClient(app, base_url="https://testserver") as http:
            http.cookies.set(COOKIE, session.token)
            for name, (kind, urls) in pages(mine(picked, staff.tenant), tenant_forms).items():
                if not urls:
                    continue
                for u in urls[:3]:
                    answer = http.get(u)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{name}: {u} answered {answer.status_code}: {answer.text[:300]}")
                times = []
                for i in range(opts.requests):
                    begun = time.perf_counter()
                    answer = http.get(urls[i % len(urls)])
                    times.append((time.perf_counter() - begun) * 1000)
                    assert answer.status_code == 200, answer.text[:300]
                recorder.seen, recorder.on = [], True
                http.get(urls[0])
                recorder.on = False
                ordered = sorted(times)
                p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered) + 0.5) - 1)]
                results[name] = {"kind": kind, "target_ms": TARGETS_MS[kind], "p50_ms": round(statistics.median(times), 1),
                                 "p95_ms": round(p95, 1), "within": p95 <= TARGETS_MS[kind],
                                 "plans": recorder.explain(runtime.engine)}
                print(f"  {name}: p50 {results[name]['p50_ms']} ms, p95 {results[name]['p95_ms']} ms "
                      f"(target {TARGETS_MS[kind]:g})", flush=True)
        report = {"submissions": opts.submissions, "staff": opts.staff, "tenant": staff.tenant, **picked, "pages": results}
        (out / "console.json").write_text(json.dumps(report, indent=2, default=str))
        (out / "CONSOLE.md").write_text(render(report))
        print(render(report))
        runtime.close()
        return 0
    finally:
        close_all()


def render(r: dict[str, Any]) -> str:
    lines = [f"# The console at {r['submissions']:,} submissions (`python -m bench.console`)", "",
             f"PostgreSQL durable (fsync on), seeded with COPY in {r['seed_seconds']} s: {r['deliveries']:,} deliveries; "
             f"sizes {r['sizes']}. Pages asked in process as `{r['staff']}` (tenant `{r['tenant']}`), each "
             "timed request after 3 warm-ups.", "",
             "| page | p50 ms | p95 ms | target p95 ms | met | slowest statement (EXPLAIN ANALYZE ms) |", "|---|---|---|---|---|---|"]
    for name, x in r["pages"].items():
        slowest = max(x["plans"], key=lambda p: p["execution_ms"] or 0, default=None)
        lines.append(f"| {name} | {x['p50_ms']:,} | {x['p95_ms']:,} | {x['target_ms']:g} | {'yes' if x['within'] else 'no'} | "
                     + (f"{slowest['execution_ms']} ms" if slowest else "–") + " |")
    lines += ["", "## Plans", ""]
    for name, x in r["pages"].items():
        lines += [f"### {name}", ""]
        for plan in x["plans"]:
            lines += ["```", plan["statement"], *plan["plan"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
