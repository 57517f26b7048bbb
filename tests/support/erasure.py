"""What an erasure test needs beyond the servers: a back office that answers by what it is sent
(and quotes it back, as real ones do), a hub on the real PostgreSQL and RabbitMQ whose worker can
be stopped and started, and a search of every table and queue for a planted value, in the clear,
JSON-escaped, base64 and inside whatever is sealed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from kombu import Connection
from sqlalchemy import Engine, MetaData, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.config.files import CircuitPolicy, RetryPolicy, load_config
from hub.config.settings import Settings
from hub.delivery.worker import Worker
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from tests.support.servers import PostgresServer, RabbitMQServer

# -- a back office that decides by what a record says


@dataclass
class EchoBackOffice:
    """Answers 503 to a record holding "ask-503", 400 quoting the record's names (JSON-escaped, as
    `json.dumps` writes them) to one holding "ask-400", and accepts the rest. Keeps every body."""

    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[bytes]:
        with self.lock:
            return list(self.bodies)

    async def case(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            self.bodies.append(raw)
        if b"ask-503" in raw:
            return JSONResponse({"result": "error", "error_desc": "Service temporarily unavailable"}, status_code=503)
        if b"ask-400" in raw:
            record = json.loads(raw)
            names = [f"{d.get('first_name')} {d.get('last_name')} <{d.get('email_address', d.get('email'))}>" for d in record.get("data", [])]
            # the quote a real validation error gives: the value as the back office read it, escaped
            text = json.dumps({"result": "error", "error_desc": f"Resident not matched: {names}"})
            return Response(text, status_code=400, media_type="application/json")
        case = f"CAS-{len(self.bodies):05d}"
        return JSONResponse({"result": "success", "data": [{"data": [{"liberty_create_case_reference": case}]}]})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/REST/case_to_crm/0.1", self.case, methods=["POST"])])


# -- the hub on the real servers, its worker under the test's control


@dataclass
class ErasureHub:
    runtime: Runtime
    url: str
    key: str
    staff_token: str
    back_office: EchoBackOffice
    sealer_keys: list[str]
    broker_url: str
    client: httpx.Client = field(init=False)
    _worker: tuple[threading.Thread, threading.Event] | None = None

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=15)

    def submit(self, payload: Any) -> str:
        answer = self.client.post(
            "/v1/forms/missed-bin-collection/submissions", json=payload, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["reference"])

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, f"/v1/admin{path}", headers={"Authorization": f"Bearer {self.staff_token}"}, **kwargs)

    def start_worker(self) -> None:
        assert self._worker is None
        stop = threading.Event()
        thread = threading.Thread(target=Worker(self.runtime, concurrency=2).run, args=(stop, 5.0), daemon=True)
        thread.start()
        self._worker = (thread, stop)

    def stop_worker(self) -> None:
        assert self._worker is not None
        thread, stop = self._worker
        stop.set()
        thread.join(20)
        assert not thread.is_alive(), "the worker did not stop"
        self._worker = None


@contextmanager
def erasure_hub(tmp_path: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer, retry: RetryPolicy) -> Iterator[ErasureHub]:
    """API (with its relay) on loopback, on a fresh database and broker namespace; the worker is
    started by the test. Payloads are sealed with keys the test holds (`sealer_keys`)."""
    namespace = "erase" + secrets.token_hex(3)
    back_office = EchoBackOffice()
    office = ServerThread(back_office.app()).start()
    keys = [Fernet.generate_key().decode()]
    key, staff_token = "erase-key-" + secrets.token_hex(8), "erase-staff-" + secrets.token_hex(8)
    env = {"HUB_DEMO_API_KEY": key, "CRM_URL": office.url, "CRM_API_TOKEN": "crm-token", "GARDEN_WASTE_URL": office.url,
           "GARDEN_WASTE_API_TOKEN": "gw-token", "DEMO_STAFF_TOKEN": staff_token}
    settings = Settings(
        database_url=postgres.create_database(f"hub_{namespace}"),
        broker_url=rabbitmq.url,
        exchange=f"{namespace}.deliveries",
        queue_prefix=f"{namespace}.",
        relay_sweep_seconds=0.1,
        data_dir=tmp_path / "var",
        encryption_keys=",".join(keys),
        index_key="erasure-index-key-" + secrets.token_hex(8),
    )
    config = load_config(settings.config_dir, env)
    lenient = CircuitPolicy(failure_threshold=1000, open_seconds=1.0)
    for name, connector in list(config.connectors.items()):
        config.connectors[name] = connector.model_copy(update={"retry": retry, "circuit": lenient})
    runtime = Runtime.build(settings, env, config=config)
    upgrade(runtime.engine)
    relay = Relay(runtime)
    api = ServerThread(create_app(runtime, relay)).start()
    hub = ErasureHub(runtime, api.url, key, staff_token, back_office, keys, rabbitmq.url)
    try:
        yield hub
    finally:
        if hub._worker is not None:
            hub.stop_worker()
        hub.client.close()
        api.stop()
        office.stop()
        runtime.close()


# -- the search


def encodings(value: str) -> set[str]:
    """How a value may be written down where it was copied: as it is, JSON-escaped (both ways
    `json.dumps` writes non-ASCII), and base64 (standard and URL-safe) at each of the three
    alignments it may start at inside a longer encoded text."""
    found = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    raw = value.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        # only the characters that depend on the value's bytes alone, not on what comes before or after
        start, end = (8 * shift + 5) // 6, (8 * (shift + len(raw))) // 6
        for text in (encoded[start:end], encoded[start:end].replace("+", "-").replace("/", "_")):
            found.add(text)
    return {f for f in found if f}


_FERNET = re.compile(r"gAAAAA[A-Za-z0-9_\-]+=*")


def _texts(value: Any, fernet: MultiFernet, where: str, depth: int = 0) -> Iterator[tuple[str, str]]:
    """Every text a stored value holds, with what is sealed inside it opened (the test has the keys)."""
    if value is None:
        return
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    yield where, text
    if depth < 3:
        for token in _FERNET.findall(text):
            try:
                opened = fernet.decrypt(token.encode())
            except InvalidToken:
                continue
            yield from _texts(opened, fernet, f"{where} (opened)", depth + 1)


def sealed_count(engine: Engine, keys: list[str]) -> int:
    """How many stored values the keys opened: proof the search looked inside what is sealed."""
    fernet = MultiFernet([Fernet(k.encode()) for k in keys])
    opened = 0
    for _where, _text in _every_cell(engine, fernet):
        if _where.endswith("(opened)"):
            opened += 1
    return opened


def _every_cell(engine: Engine, fernet: MultiFernet) -> Iterator[tuple[str, str]]:
    reflected = MetaData()
    reflected.reflect(engine)
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            for number, row in enumerate(conn.execute(select(table)).all()):
                for column, value in row._mapping.items():
                    yield from _texts(value, fernet, f"table {table.name} row {number} column {column}")


def tables_holding(engine: Engine, keys: list[str], values: list[str]) -> list[str]:
    """Where in the database (every table there is, every column) any encoding of `values` is found."""
    fernet = MultiFernet([Fernet(k.encode()) for k in keys])
    wanted = {e for v in values for e in encodings(v)}
    return [f"{where}: {text[:400]}" for where, text in _every_cell(engine, fernet) if any(w in text for w in wanted)]


def table_names(engine: Engine) -> set[str]:
    reflected = MetaData()
    reflected.reflect(engine)
    return set(reflected.tables)


def queue_names(rabbitmq: RabbitMQServer, prefix: str) -> list[str]:
    listing = rabbitmq.ctl("list_queues", "name", "--quiet").stdout
    return sorted(line.strip() for line in listing.splitlines() if line.strip().startswith(prefix))


@dataclass(frozen=True)
class Peeked:
    queue: str
    body: bytes
    headers: dict[str, Any]


def peek_all(broker_url: str, queues: list[str]) -> list[Peeked]:
    """Every message in these queues, read without acknowledging: closing the channel gives them
    back to their queues as they were (a quorum queue counts it as one more delivery)."""
    found: list[Peeked] = []
    with Connection(broker_url, connect_timeout=10) as conn:
        for name in queues:
            channel = conn.channel()
            try:
                while (message := channel.basic_get(name, no_ack=False)) is not None:
                    body = message.body.encode() if isinstance(message.body, str) else bytes(message.body)
                    found.append(Peeked(name, body, dict(message.headers or {})))
            finally:
                channel.close()
    return found


def queued_holding(messages: list[Peeked], keys: list[str], values: list[str]) -> list[str]:
    fernet = MultiFernet([Fernet(k.encode()) for k in keys])
    wanted = {e for v in values for e in encodings(v)}
    hits = []
    for message in messages:
        for where, text in [*_texts(message.body, fernet, f"queue {message.queue} body"),
                            *_texts(message.headers, fernet, f"queue {message.queue} headers")]:
            if any(w in text for w in wanted):
                hits.append(f"{where}: {text[:400]}")
    return hits


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
