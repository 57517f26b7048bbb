"""Real RabbitMQ and PostgreSQL servers for integration and end-to-end tests.

Each server runs from a private temp directory on free loopback ports:

* natively, from Debian's ``rabbitmq-server`` and ``postgresql`` packages
  (``bash scripts/install-servers.sh`` installs them), each in its own process
  group so that stopping it kills every process it started; or
* in Docker through testcontainers, when a Docker engine answers.

``TEST_SERVERS=native|docker|auto`` (default ``auto``) picks the backend.

``stop()`` stops the server but keeps its data; ``start()`` brings the same node
back, with its durable data, on the same port. ``close()`` stops it for good and
deletes its files. A missing server binary skips the test locally and fails it
when ``CI=true``: an integration test never skips in CI.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from tests.support.realworld import unavailable

__all__ = [
    "PostgresServer",
    "RabbitMQServer",
    "ServerStartError",
    "close_all",
    "docker_available",
    "free_port",
]

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 40

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_IMAGE = "rabbitmq:3.13"
POSTGRES_IMAGE = "postgres:16"


class ServerStartError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> NoReturn:
    unavailable(reason)


@functools.lru_cache(maxsize=1)
def docker_available() -> bool:
    """True when a Docker engine answers quickly (``docker info`` exits 0)."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _use_docker() -> bool:
    choice = os.environ.get("TEST_SERVERS", "auto").strip().lower()
    if choice == "docker":
        return True
    if choice == "native":
        return False
    return docker_available()


def _tail(paths: list[Path], lines: int = LOG_TAIL_LINES) -> str:
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(parts) or "(no log output)"


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def _tree_pids(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` and all their descendants (PostgreSQL's
    children, for one, call setsid() and so leave the postmaster's group)."""
    table = _processes()
    found = {pid for pid, (_, pgrp) in table.items() if pgrp == pgid}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def _alive(pids: list[int]) -> list[int]:
    table = _processes()
    return [pid for pid in pids if pid in table]


def _pid_alive(pid: int) -> bool:
    return bool(_alive([pid]))


def _stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float, *, leader_only: bool = False) -> None:
    """Send ``sig`` to the server's process group (or just its leader), wait for every
    process of its tree to go, then SIGKILL whatever is left."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    tree = _tree_pids(pgid)
    with contextlib.suppress(ProcessLookupError):
        if leader_only:
            os.kill(proc.pid, sig)
        else:
            os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None or _alive(tree):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for pid in _alive(tree):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
        end = time.monotonic() + 5
        while _alive(tree) and time.monotonic() < end:
            time.sleep(0.05)


_LIVE: set[Any] = set()
_LIVE_LOCK = threading.Lock()


def _register(server: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.add(server)


def _unregister(server: Any) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)


@atexit.register
def close_all() -> None:
    """Close every server still open in this process (also run at interpreter exit)."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


def _docker_class(module: str, name: str) -> Any:
    """``module.name`` from testcontainers; 4.x before the ``community`` split had
    ``testcontainers.postgres`` where it now has ``testcontainers.community.postgres``."""
    import importlib

    for candidate in (module, module.replace(".community", "")):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError) as exc:
            error = exc
    _unavailable(f"testcontainers is needed to run servers in Docker: {error}")


# --------------------------------------------------------------------------- RabbitMQ


class RabbitMQServer:
    """A single RabbitMQ node on free loopback ports, guest/guest, vhost ``/``."""

    def __init__(self, *, docker: bool | None = None, image: str = RABBITMQ_IMAGE) -> None:
        self.docker = _use_docker() if docker is None else docker
        self.image = image
        self.host = "127.0.0.1"
        self._port: int | None = None
        self._node_name = f"hubtest-{secrets.token_hex(4)}@localhost"
        self._dir: Path | None = None
        self._env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._container: Any = None
        self._closed = False

    # -- public API
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("RabbitMQ server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.port}//"

    @property
    def node_name(self) -> str:
        if self._container is not None:
            hostname = self._container.get_wrapped_container().attrs["Config"]["Hostname"]
            return f"rabbit@{hostname}"
        return self._node_name

    @property
    def running(self) -> bool:
        if self._container is not None:
            self._container.get_wrapped_container().reload()
            return bool(self._container.get_wrapped_container().status == "running")
        return self._proc is not None and self._proc.poll() is None

    @property
    def container_id(self) -> str | None:
        return None if self._container is None else str(self._container.get_wrapped_container().id)

    def pids(self) -> list[int]:
        """Live pids of the native node (its process tree and its epmd); [] in Docker."""
        pids = _tree_pids(self._proc.pid) if self._proc is not None else []
        if self._epmd is not None and _pid_alive(self._epmd.pid):
            pids.append(self._epmd.pid)
        return pids

    def start(self) -> RabbitMQServer:
        if self._closed:
            raise RuntimeError("RabbitMQ server was closed")
        if self.running:
            return self
        if self.docker:
            self._start_docker()
        else:
            self._start_native()
        _register(self)
        return self

    def stop(self) -> None:
        """Stop the node and keep its data; start() brings it back on the same port."""
        if self._container is not None:
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT))
            return
        if self._proc is not None:
            _stop_group(self._proc, signal.SIGTERM, STOP_TIMEOUT)
            self._proc = None

    def close(self) -> None:
        """Stop the node, its epmd, and delete its files."""
        self._closed = True
        try:
            if self._container is not None:
                self._container.stop()
                self._container = None
            self.stop()
            if self._epmd is not None:
                _stop_group(self._epmd, signal.SIGTERM, 5)
                self._epmd = None
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            _unregister(self)

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> *args`` against this node and return its output."""
        if self._container is not None:
            code, out = self._container.get_wrapped_container().exec_run(["rabbitmqctl", *args])
            done = subprocess.CompletedProcess(["rabbitmqctl", *args], code, out.decode(), "")
        else:
            if self._dir is None:
                raise RuntimeError("RabbitMQ server has not been started")
            cmd = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self._node_name, *args]
            done = subprocess.run(
                cmd, env=self._env, capture_output=True, text=True, timeout=timeout, cwd=self._dir
            )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._container is not None:
            out, err = self._container.get_logs()
            return "\n".join((out + err).decode(errors="replace").splitlines()[-lines:])
        if self._dir is None:
            return "(no log output)"
        logs = [self._dir / "stdout.log", *sorted((self._dir / "log").glob("*.log"))]
        return _tail(logs, lines)

    def __enter__(self) -> RabbitMQServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- native
    def _start_native(self) -> None:
        server = RABBITMQ_BIN / "rabbitmq-server"
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if not server.exists() or not Path(epmd).exists():
            _unavailable(f"{server} is not installed; run `bash scripts/install-servers.sh`")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hub-rabbitmq-"))
            for sub in ("home", "mnesia", "log"):
                (self._dir / sub).mkdir()
            (self._dir / "enabled_plugins").write_text("[].\n")
            (self._dir / "rabbitmq.conf").write_text(
                "# test node: never block publishers on a nearly full CI disk\n"
                "disk_free_limit.absolute = 1MB\n"
                "log.file.level = info\n"
            )
            self._port = free_port()
            epmd_port, dist_port = free_port(), free_port()
            self._env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self._dir / "home"),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "RABBITMQ_NODENAME": self._node_name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self._port),
                "RABBITMQ_DIST_PORT": str(dist_port),
                "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self._dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self._dir / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(self._dir / "rabbitmq-env.conf"),
                "ERL_EPMD_PORT": str(epmd_port),
            }
        if self._epmd is None or self._epmd.poll() is not None:
            # Our own foreground epmd on a private port: the node (and rabbitmqctl)
            # use it instead of spawning a daemonised one we could not track.
            self._epmd = subprocess.Popen(
                [epmd, "-port", self._env["ERL_EPMD_PORT"], "-address", "127.0.0.1"],
                env=self._env,
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        with open(self._dir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                [str(server)],
                env=self._env,
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    # -- docker
    def _start_docker(self) -> None:
        if self._container is not None:  # stopped by stop(): same container, same port
            self._container.get_wrapped_container().start()
            self._wait_ready()
            return
        # testcontainers' RabbitMqContainer needs pika for its own probe; a plain
        # container with the same settings plus our AMQP probe needs nothing more.
        docker_container = _docker_class("testcontainers.core.container", "DockerContainer")
        self._port = self._port or free_port()
        container = (
            docker_container(self.image)
            .with_bind_ports(5672, self._port)
            .with_env("RABBITMQ_DEFAULT_USER", "guest")
            .with_env("RABBITMQ_DEFAULT_PASS", "guest")
        )
        container.start()
        self._container = container
        self.host = container.get_container_host_ip()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import amqp

        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(
                    f"RabbitMQ node {self._node_name} exited with code {self._proc.returncode}\n"
                    + self.log_tail()
                )
            conn = amqp.Connection(
                host=f"{self.host}:{self.port}",
                userid="guest",
                password="guest",
                virtual_host="/",
                connect_timeout=2,
            )
            try:
                conn.connect()
                return
            except Exception as exc:
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    conn.collect()
            time.sleep(0.2)
        raise ServerStartError(
            f"RabbitMQ on port {self.port} did not accept an AMQP connection within "
            f"{STARTUP_TIMEOUT:.0f}s (last error: {last!r})\n" + self.log_tail()
        )


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A PostgreSQL cluster on a free loopback port; user ``postgres``, trust auth."""

    def __init__(
        self,
        *,
        dbname: str = "hub",
        docker: bool | None = None,
        image: str = POSTGRES_IMAGE,
        durable: bool = False,
    ) -> None:
        self.docker = _use_docker() if docker is None else docker
        # durable: PostgreSQL's own defaults (fsync, synchronous_commit, full_page_writes on), as
        # production runs it; the bench measures that. The tests keep a throwaway cluster.
        self.durable = durable
        self.image = image
        self.dbname = dbname
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.password = ""
        self._port: int | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._container: Any = None
        self._closed = False

    # -- public API
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PostgreSQL server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of database ``dbname`` on this server."""
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        if self._container is not None:
            self._container.get_wrapped_container().reload()
            return bool(self._container.get_wrapped_container().status == "running")
        return self._proc is not None and self._proc.poll() is None

    @property
    def container_id(self) -> str | None:
        return None if self._container is None else str(self._container.get_wrapped_container().id)

    def pids(self) -> list[int]:
        """Live pids of the native postmaster and its children; [] in Docker."""
        return _tree_pids(self._proc.pid) if self._proc is not None else []

    def start(self) -> PostgresServer:
        if self._closed:
            raise RuntimeError("PostgreSQL server was closed")
        if self.running:
            return self
        if self.docker:
            self._start_docker()
        else:
            self._start_native()
        _register(self)
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and keep its data; start() brings it back."""
        if self._container is not None:
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT))
            return
        if self._proc is not None:
            # SIGINT to the postmaster alone is PostgreSQL's "fast shutdown".
            _stop_group(self._proc, signal.SIGINT, STOP_TIMEOUT, leader_only=True)
            self._proc = None

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self._closed = True
        try:
            if self._container is not None:
                self._container.stop()
                self._container = None
            self.stop()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            _unregister(self)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its URL."""
        from psycopg import sql

        with self._connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self._container is not None:
            out, err = self._container.get_logs()
            return "\n".join((out + err).decode(errors="replace").splitlines()[-lines:])
        if self._dir is None:
            return "(no log output)"
        server_log = self._dir / "postgres.log"
        return _tail([server_log if server_log.exists() else self._dir / "initdb.log"], lines)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _connect(self, dbname: str, timeout: float = 5) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname,
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
        )

    def _start_native(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            _unavailable(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); "
                "run `bash scripts/install-servers.sh`"
            )
        # PostgreSQL refuses to run as root: switch to the `postgres` user.
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root but there is no `postgres` user to run PostgreSQL as")
            run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        first_start = self._dir is None
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hub-postgres-"))
            (self._dir / "sock").mkdir()
            if run_as:
                for path in (self._dir, self._dir / "sock"):
                    os.chown(path, run_as["user"], run_as["group"])
            self._port = free_port()
            with open(self._dir / "initdb.log", "wb") as log:
                done = subprocess.run(
                    [
                        str(bindir / "initdb"),
                        "-D", str(self._dir / "data"),
                        "-U", "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ],
                    cwd=self._dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=STARTUP_TIMEOUT,
                    **run_as,
                )
            if done.returncode != 0:
                raise ServerStartError(f"initdb failed with code {done.returncode}\n" + self.log_tail())
        with open(self._dir / "postgres.log", "ab") as log:
            self._proc = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D", str(self._dir / "data"),
                    "-p", str(self._port),
                    "-k", str(self._dir / "sock"),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", "max_connections=200",
                    "-c", "logging_collector=off",
                    *self._settings(),
                ],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **run_as,
            )
        try:
            self._wait_ready()
            if first_start:
                self._create_default_database()
        except BaseException:
            self.stop()
            raise

    def _start_docker(self) -> None:
        if self._container is not None:  # stopped by stop(): same container, same port
            self._container.get_wrapped_container().start()
            self._wait_ready()
            return
        postgres_container = _docker_class("testcontainers.community.postgres", "PostgresContainer")
        self._port = self._port or free_port()
        self.password = "postgres"
        container = (
            postgres_container(
                self.image, username=self.user, password=self.password, dbname=self.dbname, driver="psycopg"
            )
            .with_bind_ports(5432, self._port)
            .with_command(" ".join(["-c max_connections=200", *self._settings()]))
        )
        container.start()  # waits until psql inside the container answers
        self._container = container
        self.host = container.get_container_host_ip()
        self._wait_ready()

    def _settings(self) -> list[str]:
        if self.durable:  # pg_stat_statements lets the bench name the statements that cost most
            return ["-c", "shared_preload_libraries=pg_stat_statements"]
        # A throwaway cluster: survive process restarts, not power cuts.
        return ["-c", "fsync=off", "-c", "full_page_writes=off"]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(
                    f"PostgreSQL exited with code {self._proc.returncode}\n" + self.log_tail()
                )
            if self._proc is None or self._postmaster_ready():
                try:
                    with self._connect("postgres", timeout=2) as conn:
                        conn.execute("SELECT 1")
                    return
                except Exception as exc:
                    last = exc
            time.sleep(0.1)
        raise ServerStartError(
            f"PostgreSQL on port {self.port} did not accept a connection within "
            f"{STARTUP_TIMEOUT:.0f}s (last error: {last!r})\n" + self.log_tail()
        )

    def _postmaster_ready(self) -> bool:
        """Our postmaster (not another server on the port) says it accepts connections:
        postmaster.pid holds its pid on line 1 and "ready" on line 8, as pg_ctl -w checks."""
        assert self._dir is not None and self._proc is not None
        try:
            lines = (self._dir / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self._proc.pid) and lines[7].strip() == "ready"

    def _create_default_database(self) -> None:
        from psycopg import sql

        with self._connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
