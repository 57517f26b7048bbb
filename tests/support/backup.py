"""Backing up and restoring the hub's database as an operator does: `pg_dump --format=custom`
while the hub runs, `pg_restore` into a fresh database, then the two statements the runbook
(docs/deploy.md, "Backup and restore") runs before the hub starts on the restored database.

The runbook's SQL is read from docs/deploy.md itself, so the drill runs what a council is told to
run, and a change to one without the other fails the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from tests.support.processes import REPO, HubProcesses
from tests.support.realworld import unavailable
from tests.support.servers import PostgresServer, _pg_bindir

DEPLOY_DOC = REPO / "docs" / "deploy.md"


def runbook_sql(name: str) -> str:
    """The SQL block of docs/deploy.md that follows the comment line `-- <name>`."""
    text = DEPLOY_DOC.read_text()
    found = re.search(rf"^( *)```sql\n\1-- {re.escape(name)}\n(.*?)\n\1```", text, re.DOTALL | re.MULTILINE)
    if found is None:
        raise AssertionError(f"docs/deploy.md has no ```sql block starting with `-- {name}`")
    return textwrap.dedent(found.group(2)).strip()


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def _client(server: PostgresServer, tool: str, *args: str, stdin: Path | None = None, stdout: Path | None = None) -> None:
    """Runs a PostgreSQL client tool against `server`: the server's own copy inside its container
    (a client older than the server refuses to dump it), else this machine's newest."""
    if server.container_id is not None:
        command = ["docker", "exec", "-i", server.container_id, tool, "-U", server.user, *args]
    else:
        bindir = _pg_bindir()
        if bindir is None or not (bindir / tool).exists():
            unavailable(f"{tool} is not installed (no /usr/lib/postgresql/*/bin/{tool}); run `bash scripts/install-servers.sh`")
        command = [str(bindir / tool), "-h", server.host, "-p", str(server.port), "-U", server.user, *args]
    source = stdin.open("rb") if stdin else subprocess.DEVNULL
    sink = stdout.open("wb") if stdout else subprocess.PIPE
    try:
        done = subprocess.run(command, stdin=source, stdout=sink, stderr=subprocess.PIPE, timeout=300,
                              env={**os.environ, "PGPASSWORD": server.password})
    finally:
        for handle in (source, sink):
            if hasattr(handle, "close"):
                handle.close()
    if done.returncode != 0:
        raise AssertionError(f"{tool} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")


def dump(server: PostgresServer, dbname: str, path: Path) -> Path:
    """`pg_dump --format=custom` of a running database: one consistent snapshot, taken when it starts."""
    _client(server, "pg_dump", "--format=custom", "--dbname", dbname, stdout=path)
    return path


def restore(server: PostgresServer, path: Path, dbname: str) -> str:
    """A fresh database `dbname` holding the dump; its URL."""
    url = server.create_database(dbname)
    _client(server, "pg_restore", "--no-owner", "--exit-on-error", "--single-transaction", "--dbname", dbname, stdin=path)
    return url


def query(server: PostgresServer, dbname: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with server._connect(dbname) as conn:
        cursor = conn.execute(sql, params)  # no parameters: the text goes as written (the runbook's `%I`)
        return list(cursor.fetchall()) if cursor.description else []


def stop_hub(stack: HubProcesses, sig: int = signal.SIGTERM) -> None:
    """Stops every hub process: SIGTERM as `compose stop` does (the api finishes its requests, the
    workers the deliveries in hand), or SIGKILL as a crash does."""
    for name in list(stack._procs):
        stack.kill(name, sig)
    stack.api_urls.clear()
