"""What the bench's servers promise about a power cut, and what that costs in bytes written:
PostgreSQL's durability settings and WAL bytes (`pg_stat_wal`), RabbitMQ's bytes written to disk
(the node's own processes, from /proc/<pid>/io).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "wal_level")


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


def postgres_settings(url: str) -> dict[str, str]:
    with _connect(url) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in SETTINGS}


def wal_bytes(url: str) -> int:
    """WAL bytes this cluster has written since it started (PostgreSQL 14+)."""
    with _connect(url) as conn:
        row = conn.execute("SELECT wal_bytes FROM pg_stat_wal").fetchone()
    return int(row[0]) if row else 0


def disk_bytes_written(pids: list[int]) -> int:
    """Bytes the processes `pids` have caused to be written to storage (`write_bytes`)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


class Written:
    """Bytes written during a scenario: PostgreSQL WAL and RabbitMQ's disk writes."""

    def __init__(self, database_url: str, rabbit_pids: list[int]) -> None:
        self.database_url, self.rabbit_pids = database_url, rabbit_pids
        self.wal = wal_bytes(database_url)
        self.rabbit = disk_bytes_written(rabbit_pids)

    def per_submission(self, submissions: int) -> dict[str, Any]:
        wal = wal_bytes(self.database_url) - self.wal
        rabbit = disk_bytes_written(self.rabbit_pids) - self.rabbit
        n = max(submissions, 1)
        return {"wal_bytes": wal, "rabbitmq_bytes": rabbit, "submissions": submissions,
                "wal_bytes_per_submission": round(wal / n), "rabbitmq_bytes_per_submission": round(rabbit / n)}


def statements_reset(url: str) -> bool:
    """Starts `pg_stat_statements` afresh; False when the server was not started with it."""
    try:
        with _connect(url) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except Exception:  # fsync-off servers do not preload it: the report says so
        return False


def top_statements(url: str, limit: int = 12) -> list[dict[str, Any]]:
    """The statements that took most of PostgreSQL's time since the last reset."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT query, calls, total_exec_time, rows, wal_bytes FROM pg_stat_statements "
            "WHERE query NOT ILIKE %s ORDER BY total_exec_time DESC LIMIT %s",
            ("%pg_stat_statements%", limit),
        ).fetchall()
    return [{"query": " ".join(str(q).split())[:160], "calls": int(c), "total_ms": round(float(t), 1),
             "ms_per_call": round(float(t) / max(int(c), 1), 3), "rows": int(r), "wal_bytes": int(w)}
            for q, c, t, r, w in rows]
