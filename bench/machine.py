"""What the bench ran on: cores, memory, kernel, Python, RabbitMQ and PostgreSQL versions, the
libraries, and the commit of the hub under test (with how many of its files were changed).
"""

from __future__ import annotations

import os
import platform
import subprocess
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
    return info


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
