"""What the bench ran on: cores, memory, kernel, Python, RabbitMQ and PostgreSQL versions, the
libraries, and the commit of the hub under test (with how many of its files were changed).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

LIBS = ["fastapi", "uvicorn", "starlette", "sqlalchemy", "psycopg", "kombu", "amqp", "pika", "celery",
        "jsonschema-rs", "jsonschema", "orjson", "httpx", "uvloop", "httptools", "py-spy"]


def machine(broker_url: str, database_url: str) -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "kernel": platform.release(), "load_average_at_start": os.getloadavg()}
    with open("/proc/cpuinfo") as f:
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    with open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    try:
        from kombu.connection import Connection

        with Connection(broker_url) as conn:
            conn.connect()
            info["rabbitmq"] = conn.connection.server_properties.get("version", "?")
    except Exception as exc:  # the report says what it could not find out
        info["rabbitmq"] = f"? ({type(exc).__name__})"
    try:
        import psycopg

        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    except Exception as exc:
        info["postgresql"] = f"? ({type(exc).__name__})"
    versions = {}
    for lib in LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "-"
    info["libraries"] = versions
    info["hub_tree"] = _tree_state()
    info["cpu_check_ms_at_start"] = cpu_check_ms()
    return info


def cpu_check_ms() -> float:
    """CPU ms a fixed pure-Python workload takes (best of 5): the machine is a virtual one whose
    host's load changes its speed, which no process list shows. The same commit measured 1,513
    submissions/s at one hour and about 1,050/s an hour later, its API taking 9.3 CPU s for the
    work that took 6.3 s before; this figure, compared between runs, tells such runs apart."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        total = sum(i * i % 7 for i in range(200_000))
        words = sorted(str(i) for i in range(20_000))
        best = min(best, time.process_time() - started)
    assert total and words
    return round(best * 1000, 1)


def _tree_state() -> str:
    """The commit under test, and how many files of hub/ and connectors/ differ from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "hub", "connectors"], cwd=repo, capture_output=True,
                               text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {head}" + (f" with {len(dirty)} changed file(s) in hub/ and connectors/" if dirty else "")
