"""A three-node RabbitMQ cluster on loopback for fault tests: local nodes on their own AMQP and
distribution ports, one shared private epmd, one Erlang cookie, joined with `rabbitmqctl join_cluster`.

`stop_node(i)` stops one node and keeps its data; `start_node(i)` brings it back into the cluster.
`url` lists every node's AMQP URL separated by ";" (kombu's failover syntax, which the hub's
`HUB_BROKER_URL` accepts). `close()` stops everything and deletes every file. A missing
`rabbitmq-server` skips the test locally and fails it when `CI=true`, as in servers.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.support.servers import (
    RABBITMQ_BIN,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    ServerStartError,
    _register,
    _stop_group,
    _tail,
    _tree_pids,
    _unavailable,
    _unregister,
)

__all__ = ["RabbitMQCluster"]

# below Linux's ephemeral range (32768-60999), so no outgoing connection takes a port between
# choosing it and the node binding it, which under load happened with ports from bind(0)
QUIET_PORTS = range(20000, 32000)


def _quiet_ports(count: int) -> list[int]:
    """`count` distinct loopback ports below the ephemeral range, each free a moment ago."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", random.choice(QUIET_PORTS)))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


@dataclass
class _Node:
    name: str
    port: int
    dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RabbitMQCluster:
    """Three RabbitMQ nodes `hubclusterN-<hex>@localhost` forming one cluster; guest/guest, vhost `/`."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self._tag = secrets.token_hex(4)
        self._dir: Path | None = None
        self._nodes: list[_Node] = []
        self._epmd: subprocess.Popen[bytes] | None = None
        self._closed = False
        self.started_in: float | None = None  # seconds start() took, for the test's report

    # -- public API
    @property
    def urls(self) -> list[str]:
        return [node.url for node in self._nodes]

    @property
    def url(self) -> str:
        return ";".join(self.urls)

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self._nodes]

    def running(self, i: int) -> bool:
        return self._nodes[i].running

    def pids(self) -> list[int]:
        """Live pids of every node's process tree and of the shared epmd."""
        pids = [pid for node in self._nodes if node.proc is not None for pid in _tree_pids(node.proc.pid)]
        if self._epmd is not None and self._epmd.poll() is None:
            pids.append(self._epmd.pid)
        return pids

    def start(self) -> RabbitMQCluster:
        """Starts every node at once, then joins nodes 2..N to node 1, one after the other."""
        if self._closed:
            raise RuntimeError("RabbitMQ cluster was closed")
        began = time.monotonic()
        self._prepare()
        _register(self)
        try:
            self._start_epmd()
            for node in self._nodes:
                self._spawn(node)
            for node in self._nodes:
                self._wait_ready(node)
            joining = range(1, self.size)
            # stop_app and start_app run on every joining node at once (each CLI call costs seconds);
            # the joins themselves go one at a time, as concurrent joins to one node can race
            with ThreadPoolExecutor(self.size) as pool:
                list(pool.map(lambda i: self.ctl(i, "stop_app"), joining))
                for i in joining:
                    self.ctl(i, "join_cluster", self._nodes[0].name)
                list(pool.map(lambda i: self.ctl(i, "start_app"), joining))
                list(pool.map(lambda i: self._wait_ready(self._nodes[i]), joining))
            self._wait_clustered()
        except BaseException:
            self.close()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop_node(self, i: int) -> None:
        """Stops node `i` (SIGTERM to its process group: a clean shutdown), keeping its data."""
        node = self._nodes[i]
        if node.proc is not None:
            _stop_group(node.proc, signal.SIGTERM, STOP_TIMEOUT)
            node.proc = None

    def start_node(self, i: int) -> None:
        """Starts node `i` again with its data; it rejoins the cluster it left."""
        node = self._nodes[i]
        if node.running:
            return
        self._start_epmd()
        self._spawn(node)
        self._wait_ready(node)

    def close(self) -> None:
        """Stops every node and the epmd, and deletes every file."""
        self._closed = True
        try:
            for i in range(len(self._nodes)):
                with contextlib.suppress(Exception):
                    self.stop_node(i)
            if self._epmd is not None:
                _stop_group(self._epmd, signal.SIGTERM, 5)
                self._epmd = None
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            _unregister(self)

    def ctl(self, i: int, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`rabbitmqctl -n <node i> *args`, run with the environment node `i` runs with."""
        return self._cli("rabbitmqctl", i, *args, check=check, timeout=timeout)

    def queues(self, i: int, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`rabbitmq-queues -n <node i> *args`."""
        return self._cli("rabbitmq-queues", i, *args, check=check, timeout=timeout)

    def any_running(self) -> int:
        for i, node in enumerate(self._nodes):
            if node.running:
                return i
        raise RuntimeError("no node of the cluster is running")

    def cluster_members(self) -> list[str]:
        """The running members of the cluster, as a running node sees them."""
        done = self.ctl(self.any_running(), "eval", "rabbit_nodes:all_running().", "--quiet")
        return [name for name in self.node_names if name in done.stdout]

    def queue_leaders(self) -> dict[str, str]:
        """Queue name -> the node its quorum leader runs on (empty for other queue types)."""
        done = self.ctl(self.any_running(), "list_queues", "name", "type", "leader", "--quiet", "--no-table-headers")
        leaders = {}
        for line in done.stdout.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[1] == "quorum":
                leaders[fields[0]] = fields[2]
        return leaders

    def queue_members(self, queue: str) -> dict[str, Any]:
        """A queue's type, its quorum leader and the nodes its Raft log is replicated on, as
        `rabbitmqctl list_queues` names them ({} when the queue does not exist)."""
        done = self.ctl(self.any_running(), "list_queues", "name", "type", "leader", "members", "online",
                        "--formatter", "json")  # rabbitmqctl refuses --no-table-headers with json
        for row in json.loads(done.stdout or "[]"):
            if row.get("name") == queue:
                return {"type": row.get("type"), "leader": row.get("leader"),
                        "members": sorted(row.get("members") or []), "online": sorted(row.get("online") or [])}
        return {}

    def index_of(self, node_name: str) -> int:
        return self.node_names.index(node_name)

    def log_tail(self, i: int) -> str:
        node = self._nodes[i]
        return _tail([node.dir / "stdout.log", *sorted((node.dir / "log").glob("*.log"))])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _prepare(self) -> None:
        server = RABBITMQ_BIN / "rabbitmq-server"
        if not server.exists() or not Path(self._epmd_binary()).exists():
            _unavailable(f"{server} is not installed; run `bash scripts/install-servers.sh`")
        if self._dir is not None:
            return
        self._dir = Path(tempfile.mkdtemp(prefix="hub-rabbitcluster-"))
        # every node must find the others through the same epmd, and prove the same cookie
        ports = iter(_quiet_ports(1 + 2 * self.size))
        epmd_port, cookie = next(ports), secrets.token_hex(16).upper()
        for n in range(1, self.size + 1):
            base = self._dir / f"node{n}"
            for sub in ("home", "mnesia", "log"):
                (base / sub).mkdir(parents=True)
            cookie_file = base / "home" / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
            (base / "enabled_plugins").write_text("[].\n")
            (base / "rabbitmq.conf").write_text(
                "# test node: never block publishers on a nearly full CI disk\n"
                "disk_free_limit.absolute = 1MB\n"
                "log.file.level = info\n"
            )
            name, port = f"hubcluster{n}-{self._tag}@localhost", next(ports)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(base / "home"),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "RABBITMQ_NODENAME": name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(port),
                "RABBITMQ_DIST_PORT": str(next(ports)),
                "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(base / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
                # inter-node traffic stays on loopback too
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
                "ERL_EPMD_PORT": str(epmd_port),
            }
            self._nodes.append(_Node(name, port, base, env))

    @staticmethod
    def _epmd_binary() -> str:
        return shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"

    def _start_epmd(self) -> None:
        # our own foreground epmd, so no daemonised one outlives the test
        if self._epmd is not None and self._epmd.poll() is None:
            return
        assert self._dir is not None
        self._epmd = subprocess.Popen(
            [self._epmd_binary(), "-port", self._nodes[0].env["ERL_EPMD_PORT"], "-address", "127.0.0.1"],
            env=self._nodes[0].env,
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _spawn(self, node: _Node) -> None:
        with open(node.dir / "stdout.log", "ab") as out:
            node.proc = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=node.env,
                cwd=node.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _cli(self, tool: str, i: int, *args: str, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        node = self._nodes[i]
        cmd = [str(RABBITMQ_BIN / tool), "-n", node.name, *args]
        done = subprocess.run(cmd, check=False, env=node.env, capture_output=True, text=True, timeout=timeout, cwd=node.dir)
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def _wait_ready(self, node: _Node) -> None:
        """Until the node's AMQP port accepts guest/guest (after start_app, too)."""
        import amqp

        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise ServerStartError(f"RabbitMQ node {node.name} exited with code {node.proc.returncode}\n" + self.log_tail(self._nodes.index(node)))
            conn = amqp.Connection(host=f"127.0.0.1:{node.port}", userid="guest", password="guest", virtual_host="/", connect_timeout=2)
            try:
                conn.connect()
                return
            except Exception as exc:
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    conn.collect()
            time.sleep(0.2)
        raise ServerStartError(f"RabbitMQ node {node.name} did not accept AMQP within {STARTUP_TIMEOUT:.0f}s ({last!r})\n" + self.log_tail(self._nodes.index(node)))

    def _wait_clustered(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(members := self.cluster_members()) < self.size:
            if time.monotonic() > deadline:
                raise ServerStartError(f"only {members} of {self.node_names} are running in the cluster")
            time.sleep(0.5)
