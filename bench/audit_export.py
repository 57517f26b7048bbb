"""How the console's audit CSV export behaves at 100,000 entries: rows written per second and the
peak Python memory while streaming them (tracemalloc), on SQLite or a PostgreSQL URL.

    .venv/bin/python -m bench.audit_export [--rows 100000] [--database-url postgresql+psycopg://...]

The entries are inserted straight into audit_log (not chained: the export does not read the chain).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from hub.console.admin_pages import csv_lines
from hub.store import audit_search
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.tables import audit_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        start = datetime.now(UTC) - timedelta(days=1)
        with engine.begin() as conn:
            for first in range(0, args.rows, 10_000):
                conn.execute(insert(audit_log), [
                    {"at": start + timedelta(milliseconds=n), "actor": "cli:bench", "tenant": "westvale" if n % 2 else "eastmoor",
                     "action": "replay", "target": f"delivery:{n}", "detail": {"reference": f"WV{n:08d}", "note": "=1+1"},
                     "prev_hash": f"{n:064x}", "entry_hash": f"{n:064x}"}
                    for n in range(first, min(first + 10_000, args.rows))
                ])
        tracemalloc.start()
        began = time.perf_counter()
        lines = size = 0
        for line in csv_lines(audit_search.every(engine, audit_search.AuditQuery(tenant="westvale"))):
            lines += 1
            size += len(line)
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{engine.dialect.name}: {lines - 1} of {args.rows} entries (one tenant's) as {size / 1e6:.1f} MB of CSV "
              f"in {took:.2f} s ({(lines - 1) / took:,.0f} rows/s); peak Python memory {peak / 1e6:.1f} MB")
        engine.dispose()


if __name__ == "__main__":
    main()
