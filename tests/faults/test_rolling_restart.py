"""A rolling restart under load, as a deploy does it: two `hub api` and two `hub worker` processes
against the real RabbitMQ and PostgreSQL, each stopped with SIGTERM and started again, one at a
time, while a steady stream of submissions arrives through a load balancer. Nothing accepted is
lost or delivered twice, and no client that reached an api sees a broken connection or a 5xx."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from hub.config.settings import Settings
from simulators.crm import FailurePlan
from tests.faults.counting import assert_nothing_lost_or_doubled
from tests.support.processes import HubProcesses
from tests.support.servers import free_port

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
RATE = 50.0  # submissions per second
DRAIN = 2.0  # `hub api --drain`: longer than the balancer's health-check interval
API_GRACE = 10
WORKER_GRACE = 10.0
CHECK_EVERY = 0.2


class Balancer:
    """What a load balancer in front of the api replicas does: health-checks each one's /readyz
    every CHECK_EVERY s and sends requests only to those answering 200, round robin, on keep-alive
    connections; a refused connect takes the replica out and the request goes to another."""

    def __init__(self, key: str, backends: list[str]) -> None:
        self.backends = backends
        self.live: set[str] = set(backends)
        self.lock = threading.Lock()
        self.turn = 0
        self.clients = {url: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) for url in backends}
        self.stop = threading.Event()
        self.checker = threading.Thread(target=self._check, daemon=True)
        self.checker.start()

    def _check(self) -> None:
        with httpx.Client(timeout=1) as probe:
            while not self.stop.is_set():
                for url in self.backends:
                    try:
                        ok = probe.get(f"{url}/readyz").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with self.lock:
                        (self.live.add if ok else self.live.discard)(url)
                self.stop.wait(CHECK_EVERY)

    def pick(self, tried: set[str]) -> str | None:
        with self.lock:
            choices = sorted(self.live - tried)
            if not choices:
                return None
            self.turn += 1
            return choices[self.turn % len(choices)]

    def take_out(self, url: str) -> None:
        with self.lock:
            self.live.discard(url)

    def close(self) -> None:
        self.stop.set()
        self.checker.join(5)
        for client in self.clients.values():
            client.close()


class Load:
    """Posts submissions at RATE per second through the balancer until stopped, counting what
    each one met."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.offered = 0
        self.accepted: list[str] = []
        self.answered_while_draining = 0  # 202s that carried `Connection: close`
        self.refused_connects = 0
        self.statuses: Counter[int] = Counter()
        self.broken: list[str] = []  # reset, EOF or timeout once a connection was made
        self.no_backend = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            n = 0
            while not self.stop.is_set():
                self.stop.wait(max(0.0, started + n / RATE - time.monotonic()))
                if self.stop.is_set():
                    break
                pool.submit(self._post)
                n += 1
            self.offered = n

    def _post(self) -> None:
        tried: set[str] = set()
        deadline = time.monotonic() + 10
        while True:
            url = self.balancer.pick(tried)
            if url is None:
                if time.monotonic() > deadline:
                    with self.lock:
                        self.no_backend += 1
                    return
                time.sleep(0.05)
                tried.clear()
                continue
            try:
                response = self.balancer.clients[url].post("/v1/forms/missed-bin-collection/submissions", json=SAMPLE)
            except httpx.ConnectError:
                # nothing was sent: the balancer tries another replica
                with self.lock:
                    self.refused_connects += 1
                self.balancer.take_out(url)
                tried.add(url)
                continue
            except httpx.HTTPError as exc:
                with self.lock:
                    self.broken.append(f"{url}: {type(exc).__name__}: {exc}")
                return
            with self.lock:
                self.statuses[response.status_code] += 1
                if response.status_code == 202:
                    self.accepted.append(response.json()["reference"])
                    if response.headers.get("connection", "").lower() == "close":
                        self.answered_while_draining += 1
            return

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(30)


def events(log: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == name:
            found.append(entry)
    return found


def test_a_rolling_restart_of_every_api_and_worker_under_steady_load_loses_doubles_and_breaks_nothing(stack: HubProcesses) -> None:
    ports = {"api-1": free_port(), "api-2": free_port()}
    api_args = ("--drain", str(DRAIN), "--grace", str(API_GRACE))
    worker_args = ("--concurrency", "8", "--grace", str(WORKER_GRACE))
    for name, port in ports.items():
        stack.start_api(name, *api_args, port=port)
    for name in ("worker-a", "worker-b"):
        stack.start_worker(name, *worker_args)
    # each delivery takes a little while, so a stopping worker has deliveries in hand
    stack.crm.arm(FailurePlan(count=1_000_000, mode="hang", seconds=0.1))
    balancer = Balancer(stack.key, [f"http://127.0.0.1:{port}" for port in ports.values()])
    load = Load(balancer).start()
    stop_seconds: dict[str, float] = {}
    exit_codes: dict[str, int] = {}
    restarts = 0
    try:
        time.sleep(3)
        for name, port in ports.items():
            before = load.answered_while_draining
            started = time.monotonic()
            exit_codes[name] = stack.kill(name, signal.SIGTERM, timeout=DRAIN + API_GRACE + 15)
            stop_seconds[name] = round(time.monotonic() - started, 2)
            assert load.answered_while_draining > before, f"{name} served nothing while it drained"
            stack.start_api(name, *api_args, port=port)
            restarts += 1
            time.sleep(3)
        for name in ("worker-a", "worker-b"):
            started = time.monotonic()
            exit_codes[name] = stack.kill(name, signal.SIGTERM, timeout=WORKER_GRACE + 15)
            stop_seconds[name] = round(time.monotonic() - started, 2)
            stack.start_worker(name, *worker_args)
            restarts += 1
            time.sleep(3)
    finally:
        load.finish()
        balancer.close()
    in_flight_at_stop = {name: [e.get("in_flight") for e in events(stack.log(name), "worker_stopping")] for name in ("worker-a", "worker-b")}
    returned = {name: [e.get("count") for e in events(stack.log(name), "worker_stopped_with_deliveries_in_flight")]
                for name in ("worker-a", "worker-b")}
    stack.crm.arm(FailurePlan(count=0))
    counts = assert_nothing_lost_or_doubled(stack, load.accepted, timeout=240)
    figures = {
        "offered": load.offered, "accepted": len(load.accepted), "statuses": dict(load.statuses),
        "delivered": counts.get("deliveries_delivered", 0), "duplicated_effects": counts["duplicated_effects"],
        "redelivered_and_absorbed": counts["redelivered_and_absorbed"], "restarts": restarts,
        "refused_connects": load.refused_connects, "answered_while_draining": load.answered_while_draining,
        "broken": len(load.broken), "no_backend": load.no_backend, "stop_seconds": stop_seconds, "exit_codes": exit_codes,
        "worker_in_flight_at_sigterm": in_flight_at_stop, "worker_returned_unfinished": returned,
    }
    print("rolling restart:", figures)
    assert restarts == 4
    assert not load.broken, load.broken[:5]
    assert load.no_backend == 0
    assert set(load.statuses) == {202}, load.statuses
    assert len(load.accepted) == load.offered > 0.8 * RATE * 15
    assert counts["deliveries_delivered"] == len(load.accepted)
    # SIGTERM is a clean stop: uvicorn re-raises it once shut down, the worker returns
    assert all(code in (0, -signal.SIGTERM) for code in exit_codes.values()), exit_codes
    for name in ports:
        assert stop_seconds[name] < DRAIN + API_GRACE + 5, stop_seconds
        assert "Traceback" not in stack.log(name)
    for name in ("worker-a", "worker-b"):
        assert stop_seconds[name] < WORKER_GRACE + 5, stop_seconds
        assert len(in_flight_at_stop[name]) == 1, f"{name} did not stop gracefully"
