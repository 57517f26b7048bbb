"""The connector kit: what an outside author needs to build and test a connector without running
the hub. It builds a connector exactly as the hub does (options checked, secrets by reference, the
tenants' allow-list in force), gives it a delivery context, stands up a fake HTTP back office on
loopback that answers as a test tells it, and runs the contract every connector must keep.

    from connectors import kit

    def test_my_connector_keeps_the_contract() -> None:
        with kit.FakeBackOffice() as office:
            connector = kit.build(MyConnector, {"url": office.url}, env={"MY_TOKEN": "t0ken"})
            kit.assert_keeps_the_contract(connector, {"subject": "Missed bin"}, office, secrets=["t0ken"])

docs/connector-kit.md is the contract in words; examples/ticketing-connector is a whole plug-in.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.base import Connector, DeliveryContext, Health, Outcome, Secrets
from connectors.registry import ConnectorRegistry
from hub.api.server_thread import ServerThread
from hub.config.files import ConnectorConfig
from hub.errors import OutboundRefused, PermanentError, TransientError
from hub.logs import add_secrets, captured
from hub.outbound.guard import AllowList

LOOPBACK = ("127.0.0.1", "localhost")


def build(connector_class: type[Connector], options: Mapping[str, Any], env: Mapping[str, str] | Secrets | None = None,
          allowed_hosts: Iterable[str] = LOOPBACK, name: str = "under-test") -> Connector:
    """The connector as the hub builds it from a configuration entry: its options validated by its
    `options_model` (ConfigError naming each bad option), secrets resolved from `env` by name, and
    only `allowed_hosts` callable (`self.outbound`, and every `connectors.http.client()` it makes
    while it is built)."""
    registry = ConnectorRegistry()
    registry.register("under-test", connector_class)
    config = ConnectorConfig(name=name, type="under-test", options=dict(options))
    secrets = env if isinstance(env, Secrets) else Secrets(env or {})
    return registry.build(config, secrets, AllowList(tuple(allowed_hosts), owner="the kit's tenant"))


def context(connector: Connector, reference: str = "EDC-KIT0000001", attempt: int = 1, tenant: str = "eastmoor",
            form_id: str = "general-enquiry", delivery_id: int = 1) -> DeliveryContext:
    """A delivery as the hub hands it over; the idempotency key is `<reference>/<connector>`, the
    same on every attempt of that delivery."""
    return DeliveryContext(reference, connector.name, delivery_id, f"{reference}/{connector.name}", attempt, tenant, form_id)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeBackOffice:
    """An HTTP back office on loopback: it records every request and answers `status` with `body`,
    or, while `failures` are queued, with each of those first (a status, or "hang" to answer after
    the connector's timeout has passed)."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    received: list[Received] = field(default_factory=list)
    failures: list[int | str] = field(default_factory=list)
    # a "hang" answers after this long: give the connector under test a shorter timeout (1 s)
    hang_seconds: float = 2.0
    _server: ServerThread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Self:
        async def anything(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self.received.append(Received(request.method, request.url.path, dict(request.headers), body))
                failure = self.failures.pop(0) if self.failures else None
            if failure == "hang":
                import anyio

                await anyio.sleep(self.hang_seconds)
                return Response(b"{}", status_code=200, media_type=self.content_type)
            if isinstance(failure, int):
                return Response(b"{}", status_code=failure, media_type=self.content_type)
            return Response(self.body, status_code=self.status, media_type=self.content_type)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        app = Starlette(routes=[Route("/", anything, methods=methods), Route("/{path:path}", anything, methods=methods)])
        self._server = ServerThread(app).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "use FakeBackOffice as a context manager"
        return self._server.url

    def fail_next(self, *failures: int | str) -> None:
        with self._lock:
            self.failures.extend(failures)


def assert_keeps_the_contract(connector: Connector, record: Mapping[str, Any], office: FakeBackOffice,
                              secrets: Iterable[str] = ()) -> None:
    """What the hub relies on from every HTTP connector, each failure named:

    1. a record the back office accepts gives an `Outcome`;
    2. the same delivery sent again is accepted again (the hub sends at least once: a connector
       whose back office takes an idempotency key sends `context.idempotency_key`);
    3. no answer in time, a 5xx or a 429 raises TransientError (retried); a 4xx raises
       PermanentError (parked for a person): never another exception;
    4. a host the tenants do not allow is never called: OutboundRefused, and nothing sent;
    5. `check()` answers a `Health`, and `describe()` a line, neither naming a secret;
    6. no secret appears in an error's reason or in the hub's log lines.
    """
    secret_values = [s for s in secrets if s]
    add_secrets(secret_values)
    with captured() as logs:
        before = len(office.received)
        first = connector.send(record, context(connector))
        assert isinstance(first, Outcome), f"send() returned {first!r}, not an Outcome"
        again = connector.send(record, context(connector, attempt=2))
        assert isinstance(again, Outcome), "the same delivery sent again (the hub sends at least once) must be accepted too"
        assert len(office.received) == before + 2, f"two sends reached the back office {len(office.received) - before} time(s)"
        errors: list[str] = []
        for failure, expected in (("hang", TransientError), (503, TransientError), (429, TransientError),
                                  (400, PermanentError), (404, PermanentError)):
            office.fail_next(failure)
            try:
                connector.send(record, context(connector))
            except (TransientError, PermanentError) as error:
                if not isinstance(error, expected):
                    raise AssertionError(f"a back office answering {failure} raised {type(error).__name__}, "
                                         f"not {expected.__name__}") from None
                errors.append(error.reason)
            else:
                raise AssertionError(f"a back office answering {failure} gave an Outcome, not {expected.__name__}")
        health = connector.check()
        assert isinstance(health, Health), f"check() returned {health!r}, not a Health"
        described = connector.describe()
        assert isinstance(described, str) and described, "describe() must say what the connector sends where"
    for secret in secret_values:
        for where, text in (("an error's reason", " ".join(errors)), ("check()", health.detail),
                            ("describe()", described), ("the logs", logs.getvalue())):
            assert secret not in text, f"a secret appears in {where}"
    assert_refuses_unlisted_hosts(type(connector), connector.options.model_dump(), record, office, connector.secrets)


def assert_refuses_unlisted_hosts(connector_class: type[Connector], options: Mapping[str, Any], record: Mapping[str, Any],
                                  office: FakeBackOffice, secrets: Secrets | None = None) -> None:
    """Built for tenants that allow only another host, the connector calls nothing on loopback."""
    before = len(office.received)
    fenced = build(connector_class, options, secrets, allowed_hosts=("backoffice.council.example",))
    try:
        fenced.send(record, context(fenced))
    except OutboundRefused:
        pass
    except (TransientError, PermanentError) as error:
        raise AssertionError(f"a host the tenants do not allow was refused as {type(error).__name__}, "
                             "not OutboundRefused: does every client come from connectors.http.client()?") from None
    else:
        raise AssertionError("the connector called a host its tenants do not allow")
    finally:
        fenced.close()
    assert len(office.received) == before, "the connector reached a host its tenants do not allow"
