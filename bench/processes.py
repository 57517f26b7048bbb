"""Processes the bench starts, each in its own process group and always stopped by pid, and the
CPU seconds and memory of each process tree, read from /proc.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()


def spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen[bytes]:
    """Starts `args` in a new session (its pid is its process group id), logging to `log`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    with _LOCK:
        _LIVE[proc.pid] = proc
    return proc


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """`sig` to the process group, then SIGKILL to whatever of its tree is left after `timeout`."""
    tree = tree_pids(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    left = [p for p in tree if _alive(p)]
    if proc.poll() is None or left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    with _LOCK:
        _LIVE.pop(proc.pid, None)


@atexit.register
def stop_all() -> None:
    """Stops every process this module started and has not stopped yet (also at exit)."""
    with _LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        with contextlib.suppress(Exception):
            stop(proc, timeout=5)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
    return text.rsplit(")", 1)[1].split()


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every live process."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] != "Z":
                found[int(entry)] = (int(fields[1]), int(fields[2]))
    return found


def tree_pids(*roots: int) -> list[int]:
    """The processes in the groups led by `roots` and all their descendants."""
    table = _table()
    found = {pid for pid, (_, pgrp) in table.items() if pgrp in roots} | {r for r in roots if r in table}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, plus that of its children it has already reaped."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # fields[0] is "state" (field 3 of stat): utime, stime, cutime, cstime are fields 14..17
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def status_kb(pid: int, key: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in kB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> None:
    """Resets VmHWM to the current RSS (Linux: write 5 to clear_refs), so a peak is per scenario."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (from /proc/stat)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS


@dataclass
class Group:
    """A named set of process trees (the api, the workers, RabbitMQ...) measured together."""

    name: str
    roots: list[int]
    cpu_start: dict[int, float] = field(default_factory=dict)
    peak_rss_kb: dict[int, int] = field(default_factory=dict)
    # False: VmHWM keeps the process's lifetime peak (bench.uploads reads it before and after)
    reset: bool = True

    def pids(self) -> list[int]:
        return tree_pids(*self.roots)

    def begin(self) -> None:
        self.cpu_start = {pid: cpu_seconds(pid) for pid in self.pids()}
        self.peak_rss_kb = {}
        for pid in self.cpu_start if self.reset else ():
            reset_peak(pid)

    def sample(self) -> int:
        """Records each process's peak so far; returns the group's current RSS in kB."""
        total = 0
        for pid in self.pids():
            rss = status_kb(pid, "VmRSS")
            hwm = max(status_kb(pid, "VmHWM"), rss)
            self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), hwm)
            total += rss
        return total

    def end(self) -> dict[str, Any]:
        self.sample()
        cpu = sum(max(0.0, cpu_seconds(pid) - self.cpu_start.get(pid, 0.0)) for pid in self.pids())
        peaks = sorted(self.peak_rss_kb.values(), reverse=True)
        return {
            "cpu_seconds": round(cpu, 2),
            "processes": len(self.peak_rss_kb),
            "peak_rss_mb_max_process": round(peaks[0] / 1024, 1) if peaks else 0.0,
            "peak_rss_mb_sum": round(sum(peaks) / 1024, 1),
        }


class Meter:
    """Measures CPU and peak memory of several groups over one scenario, sampling in a thread."""

    def __init__(self, groups: list[Group], every: float = 0.5) -> None:
        self.groups = groups
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.series: dict[str, list[tuple[float, int]]] = {g.name: [] for g in groups}
        self._busy = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Meter:
        for group in self.groups:
            group.begin()
        self._busy, self._t0 = machine_busy_seconds(), time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            now = time.monotonic() - self._t0
            for group in self.groups:
                self.series[group.name].append((round(now, 2), group.sample()))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> dict[str, Any]:
        groups = {g.name: g.end() for g in self.groups}
        ours = sum(float(g["cpu_seconds"]) for g in groups.values())
        busy = machine_busy_seconds() - self._busy
        wall = time.monotonic() - self._t0
        return {
            "wall_seconds": round(wall, 2),
            "groups": groups,
            "machine_busy_cpu_seconds": round(busy, 2),
            # CPU used by processes the bench did not start (other engineers' tests): the noise
            "other_cpu_seconds": round(max(0.0, busy - ours), 2),
        }


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
