"""Where the hub spends its time: py-spy samples the API and worker processes during a run, and
the samples are summarised by function (self and inclusive) and by the library doing the work.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.processes import spawn

REPO = Path(__file__).resolve().parent.parent

# the leaf-most frame from one of these decides which library a sample is charged to
PACKAGES = [
    ("/sqlalchemy/", "sqlalchemy"), ("/psycopg", "psycopg"), ("/kombu/", "kombu"), ("/amqp/", "py-amqp"),
    ("/httpx/", "httpx"), ("/httpcore/", "httpx"), ("/h11/", "httpx"), ("/structlog/", "structlog"),
    ("/prometheus_client/", "prometheus"), ("/uvicorn/", "uvicorn"), ("/starlette/", "starlette"),
    ("/fastapi/", "fastapi"), ("/pydantic", "pydantic"), ("/anyio/", "anyio"), ("/jmespath/", "jmespath"),
    ("/orjson", "orjson"), ("/bench/", "bench"), ("/hub/", "hub"), ("/connectors/", "connectors"),
]


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy record on each given process until stop(); raw (collapsed) stacks per process."""

    def __init__(self, workdir: Path, targets: dict[str, int], rate: int = 100) -> None:
        self.files: dict[str, Path] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        binary = py_spy()
        if binary is None:
            return
        for name, pid in targets.items():
            out = workdir / f"profile-{name}.txt"
            self.files[name] = out
            args = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                    "--nonblocking", "--gil", "--full-filenames", "--output", str(out)]
            self.procs.append(spawn(args, dict(os.environ), workdir / "py-spy.log"))

    def stop(self) -> None:
        from bench.processes import stop

        for proc in self.procs:
            stop(proc, timeout=20, sig=signal.SIGINT)  # py-spy writes its file on Ctrl-C


def _short(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(REPO) + "/"):
        path = path[len(str(REPO)) + 1:]
    else:
        path = re.sub(r"^.*/lib/python3\.\d+/", "", path)
    return f"{name} ({path})"


def _is_hub(frame: str) -> bool:
    # the command-line entry frames hold every sample of the process, so they say nothing
    return ("/hub/" in frame or "/connectors/" in frame) and "/hub/cli.py" not in frame and "__main__" not in frame


def _package(frame: str) -> str | None:
    for marker, package in PACKAGES:
        if marker in frame:
            return package
    return None


def summarise(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions by self and inclusive samples, and samples charged to each library."""
    self_count: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_count[_short(frames[-1])] += count
        # inclusive time of the hub's own functions: which step of the pipeline costs what
        for func in {_short(f) for f in frames if _is_hub(f)}:
            inclusive[func] += count
        owner = next((p for p in (_package(f) for f in reversed(frames)) if p), "stdlib/other")
        packages[owner] += count

    def share(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "self_percent": share(self_count), "hub_inclusive_percent": share(inclusive),
            "by_library_percent": share(packages)}
