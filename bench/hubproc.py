"""The hub as it runs in production, for the bench: `hub migrate`, then `hub api` and `hub worker`
processes on a fresh PostgreSQL database and a fresh RabbitMQ exchange and queue per stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika

from bench.processes import Group, free_port, python, spawn, stop
from hub.privacy.sealing import new_key

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
CONNECTOR = "sink"
FORM = "missed-bin-collection"


def pika_parameters(broker_url: str) -> pika.URLParameters:
    """kombu writes the default vhost as `//`; pika wants it escaped. Of a cluster's `;`-separated
    URLs (kombu's failover list) the first node answers."""
    broker_url = broker_url.split(";")[0]
    if broker_url.endswith("//"):
        broker_url = broker_url[:-1] + "%2F"
    return pika.URLParameters(broker_url)


def queue_info(broker_url: str, queue: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of a queue, or None when it does not exist yet."""
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True)
        return int(ok.method.message_count), int(ok.method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if conn.is_open:
            conn.close()


def delete_queue(broker_url: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    try:
        conn.channel().queue_delete(queue)
    except pika.exceptions.AMQPError:
        pass
    finally:
        if conn.is_open:
            conn.close()


class HubStack:
    """One hub deployment: its own database, exchange and queue, API processes and workers."""

    def __init__(self, workdir: Path, postgres: Any, broker_url: str, sink_url: str, name: str) -> None:
        self.workdir = workdir
        self.broker_url = broker_url
        self.key = "bench-" + secrets.token_hex(16)
        self.database_url = postgres.create_database(name)
        self.queue = f"{name}.{CONNECTOR}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HUB_")},
            "HUB_DATABASE_URL": self.database_url,
            "HUB_BROKER_URL": broker_url,
            "HUB_CONFIG_DIR": str(BENCH / "config"),
            "HUB_MAPPINGS_DIR": str(BENCH / "mappings"),
            "HUB_EXCHANGE": f"{name}.deliveries",
            "HUB_QUEUE_PREFIX": f"{name}.",
            "HUB_LOG_LEVEL": "warning",
            # payloads are sealed at rest: fresh keys per stack, shared by its processes and fill()
            "HUB_ENCRYPTION_KEYS": new_key(),
            "HUB_INDEX_KEY": secrets.token_hex(32),
            "BENCH_API_KEY": self.key,
            "BENCH_SINK_URL": sink_url,
        }
        self.apis: list[Any] = []
        self.workers: list[Any] = []
        self.api_urls: list[str] = []
        import subprocess

        subprocess.run(python("hub", "migrate"), cwd=REPO, env=self.env, check=True, capture_output=True, timeout=120)

    def start_apis(self, count: int = 1) -> list[str]:
        import httpx

        for _ in range(count):
            port = free_port()
            index = len(self.apis)
            proc = spawn(python("hub", "api", "--port", str(port)), self.env, self.workdir / f"api{index}.log")
            self.apis.append(proc)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hub api did not become ready: see {self.workdir}/api{index}.log")
                time.sleep(0.1)
            self.api_urls.append(url)
        return self.api_urls

    def start_workers(self, count: int, concurrency: int) -> None:
        for _ in range(count):
            index = len(self.workers)
            args = python("hub", "worker", "--concurrency", str(concurrency), "--grace", "5")
            self.workers.append(spawn(args, self.env, self.workdir / f"worker{index}.log"))
        want = len(self.workers)
        self._wait_queue(lambda info: info is not None and info[1] >= want, f"{want} worker(s) to consume")

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop(proc)
        self.workers = []

    def _wait_queue(self, ready: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready(queue_info(self.broker_url, self.queue)):
            if any(p.poll() is not None for p in [*self.apis, *self.workers]) or time.monotonic() > deadline:
                raise RuntimeError(f"gave up waiting for {what}: see the logs in {self.workdir}")
            time.sleep(0.1)

    def groups(self) -> list[Group]:
        groups = [Group("hub api", [p.pid for p in self.apis])]
        if self.workers:
            groups.append(Group("hub workers", [p.pid for p in self.workers]))
        return groups

    def counts(self) -> dict[str, int]:
        """Submissions, deliveries by state, and outbox rows, straight from PostgreSQL."""
        import psycopg

        with psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            found = {"submissions": conn.execute("SELECT count(*) FROM submissions").fetchone()[0],  # type: ignore[index]
                     "outbox": conn.execute("SELECT count(*) FROM outbox").fetchone()[0]}  # type: ignore[index]
            for state, number in conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state"):
                found[f"deliveries_{state}"] = number
        return found

    def fill(self, count: int, seed: int = 7, batch: int = 1000) -> float:
        """Stores `count` submissions as intake would (submission sealed with the stack's key, the
        resident's e-mail link, delivery and outbox row per submission, each batch one
        transaction) so the relay publishes them; returns seconds."""
        import random

        from sqlalchemy import insert

        from bench.payloads import payload
        from hub.intake.forms import load_forms
        from hub.privacy.sealing import Sealer, subject_digest
        from hub.store.db import make_engine
        from hub.store.submissions import new_reference
        from hub.store.tables import customer_links, deliveries, outbox, submissions

        rng = random.Random(seed)
        sealer = Sealer.from_keys([self.env["HUB_ENCRYPTION_KEYS"]])
        index_key = self.env["HUB_INDEX_KEY"].encode()
        form = load_forms(REPO / "schemas").get(FORM)
        assert form is not None
        engine = make_engine(self.database_url)
        started = time.monotonic()
        try:
            for first in range(0, count, batch):
                now = datetime.now(UTC)
                rows, links = [], []
                for i in range(first, min(count, first + batch)):
                    body = payload(rng, i)
                    raw = json.dumps(body, ensure_ascii=False).encode()
                    rows.append({"reference": new_reference("BEN"), "tenant": "bench", "client_id": "bench-portal",
                                 "form_id": FORM, "form_version": 1, "payload": sealer.seal(body), "received_at": now,
                                 "idempotency_key": None, "body_sha256": hashlib.sha256(raw).hexdigest()})
                    links.append([(kind, subject_digest(index_key, kind, value))
                                  for kind, value in form.subject_identifiers(body)])
                with engine.begin() as conn:
                    ids = conn.execute(insert(submissions).returning(submissions.c.id, sort_by_parameter_order=True),
                                       rows).scalars().all()
                    found = [{"tenant": "bench", "submission_id": sid, "kind": kind, "digest": digest}
                             for sid, pairs in zip(ids, links) for kind, digest in pairs]
                    if found:
                        conn.execute(insert(customer_links), found)
                    delivery_ids = conn.execute(
                        insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True),
                        [{"submission_id": sid, "tenant": "bench", "connector": CONNECTOR, "state": "pending",
                          "attempts": 0, "created_at": now, "updated_at": now} for sid in ids],
                    ).scalars().all()
                    conn.execute(insert(outbox), [{"delivery_id": d, "connector": CONNECTOR, "available_at": now}
                                                  for d in delivery_ids])
        finally:
            engine.dispose()
        return time.monotonic() - started

    def close(self) -> None:
        self.stop_workers()
        for proc in self.apis:
            stop(proc)
        self.apis = []
        delete_queue(self.broker_url, self.queue)
