# mypy: disallow-untyped-calls=False
# (kombu has no type hints: its calls are untyped wherever the broker is touched)
"""AMQP push connector for back offices that consume from RabbitMQ themselves: publishes the record
as persistent JSON to their exchange, with publisher confirms and `mandatory` so nothing is lost silently.

    broker unreachable, connection lost, no confirm in time, nack  -> TransientError (retry)
    no queue bound for the routing key, exchange missing or
    declared otherwise, credentials or permissions refused,
    broker host not on the tenants' allowed hosts                  -> PermanentError (park)
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import amqp
import amqp.exceptions
from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer
from pydantic import Field, field_validator

from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Preview, Secrets
from hub.errors import ConfigError, DeliveryError, OutboundRefused, PermanentError, TransientError
from hub.logs import get_logger
from hub.outbound.guard import check_host, network_hosts

log = get_logger("connectors.amqp")
ROUTING_FIELDS = ("form_id", "tenant", "connector", "reference")


class AmqpOptions(ConnectorOptions):
    # the broker URL carries credentials, so the file names only the variable that holds it
    url_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    exchange: str = Field(min_length=1, max_length=255)
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    # `{form_id}`, `{tenant}`, `{connector}` and `{reference}` are filled in per delivery
    routing_key: str = "{form_id}"
    declare_exchange: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("routing_key")
    @classmethod
    def _fields_known(cls, value: str) -> str:
        for _, field, spec, conversion in string.Formatter().parse(value):
            if field is not None and (field not in ROUTING_FIELDS or spec or conversion):
                raise ValueError(f"routing_key may use only {', '.join('{' + f + '}' for f in ROUTING_FIELDS)}; found {{{field}}}")
        return value


class AmqpConnector(Connector):
    options_model = AmqpOptions
    options: AmqpOptions

    def __init__(self, name: str, options: AmqpOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._exchange = Exchange(options.exchange, type=options.exchange_type, durable=True)
        # one connection per connector, used by one sender at a time (kombu is not thread-safe)
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._returned: list[str] = []

    def routing_key(self, context: DeliveryContext) -> str:
        return self.options.routing_key.format(
            form_id=context.form_id, tenant=context.tenant, connector=context.connector, reference=context.reference
        )

    # -- the connection -------------------------------------------------------------------

    def _connect(self) -> Connection:
        timeout = self.options.timeout_seconds
        url = self.secrets.env(self.options.url_env)
        try:  # the URL holds a password: a refusal names only the host
            for host, port in network_hosts(url):
                check_host(host, port, self.outbound)
        except OutboundRefused as exc:
            raise OutboundRefused(f"{self.name} was not called: the broker's {exc.reason}") from None
        return Connection(
            url,
            connect_timeout=timeout,
            heartbeat=0,
            # confirms: publish returns only once the broker has the message (ignored in memory://)
            transport_options={"confirm_publish": True, "read_timeout": timeout, "write_timeout": timeout},
        )

    def _ready_producer(self) -> Producer:
        if self._producer is not None:
            return self._producer
        connection = self._connect()
        try:
            _open(connection)
            channel = connection.channel()
            if isinstance(channel, amqp.Channel):
                # the broker returns an unroutable `mandatory` message before it confirms it
                channel.events["basic_return"].add(self._on_return)
            if self.options.declare_exchange:
                self._exchange(channel).declare()
        except BaseException:
            connection.release()
            raise
        self._connection = connection
        self._producer = Producer(channel, exchange=self._exchange, auto_declare=False)
        return self._producer

    def _drop(self) -> None:
        """Forget the connection after any failure; the next send opens a new one."""
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # it is already broken; nothing more to release
                pass

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.append(str(getattr(message, "properties", {}).get("message_id", "")))

    # -- sending --------------------------------------------------------------------------

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        headers = (("message_id", context.idempotency_key), ("type", context.form_id), ("x-hub-reference", context.reference))
        return Preview("AMQP", f"exchange {self.options.exchange}, routing key {self.routing_key(context)}", headers,
                       "application/json", _body(record).decode())

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        self.refuse_files(record)  # files go by e-mail or REST only: never dropped silently
        body = _body(record)
        routing_key = self.routing_key(context)
        with self._lock:
            try:
                producer = self._ready_producer()
                if not isinstance(producer.channel, amqp.Channel) and not self._routable(producer, routing_key):
                    raise PermanentError(self._unroutable(routing_key))
                self._returned.clear()
                producer.publish(
                    body,
                    routing_key=routing_key,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,  # persistent: survives a broker restart in a durable queue
                    mandatory=True,
                    message_id=context.idempotency_key,  # the consumer dedupes on it
                    type=context.form_id,
                    app_id="council-connector-hub",
                    timestamp=int(datetime.now(UTC).timestamp()),
                    headers={"x-hub-reference": context.reference, "x-hub-form": context.form_id, "x-hub-tenant": context.tenant},
                    confirm_timeout=self.options.timeout_seconds,
                )
            except (DeliveryError, ConfigError):
                raise
            except Exception as exc:
                self._drop()
                raise self.classify(exc) from None
            if context.idempotency_key in self._returned:
                raise PermanentError(self._unroutable(routing_key))
        return Outcome()

    def _routable(self, producer: Producer, routing_key: str) -> bool:
        """The in-process transport has no `mandatory`: ask its routing table directly."""
        channel: Any = producer.channel
        exchange = self.options.exchange
        if exchange not in channel.get_exchanges():
            raise PermanentError(f"exchange {exchange!r} does not exist on the broker")
        found = channel.typeof(exchange).lookup(channel.get_table(exchange), exchange, routing_key, None)
        return bool(found)

    def _unroutable(self, routing_key: str) -> str:
        return f"no queue bound for routing key {routing_key!r} on exchange {self.options.exchange!r}"

    def classify(self, exc: BaseException) -> DeliveryError:
        """TransientError or PermanentError for a broker failure; the reason never holds the URL."""
        exchange = self.options.exchange
        if isinstance(exc, amqp.exceptions.NotFound):
            return PermanentError(f"exchange {exchange!r} does not exist on the broker")
        if isinstance(exc, amqp.exceptions.AccessRefused):
            return PermanentError(f"the broker refused the credentials or permissions for exchange {exchange!r}")
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            return PermanentError(f"exchange {exchange!r} exists with other settings than {self.options.exchange_type}, durable")
        if isinstance(exc, amqp.exceptions.MessageNacked):
            # RabbitMQ nacks when a bound queue is full (x-overflow: reject-publish): it drains
            return TransientError(f"the broker did not take the message for exchange {exchange!r} (nack; a queue may be full)")
        if isinstance(exc, TimeoutError):
            return TransientError(f"no answer from the broker within {self.options.timeout_seconds:g} s")
        if isinstance(exc, OSError):
            return TransientError(f"could not reach the broker: {exc.strerror or type(exc).__name__}")
        return TransientError(f"lost the broker connection: {type(exc).__name__}")

    # -- operations -----------------------------------------------------------------------

    def check(self) -> Health:
        try:
            connection = self._connect()
        except (ConfigError, OutboundRefused) as exc:
            return Health(False, str(exc))
        try:
            _open(connection)
            exists = self._exchange_exists(connection.channel())
        except Exception as exc:
            return Health(False, self.classify(exc).reason)
        finally:
            connection.release()
        if exists:
            return Health(True, f"broker reachable; exchange {self.options.exchange!r} exists")
        if self.options.declare_exchange:
            return Health(True, f"broker reachable; exchange {self.options.exchange!r} will be declared on the first delivery")
        return Health(False, f"exchange {self.options.exchange!r} does not exist on the broker")

    def _exchange_exists(self, channel: Any) -> bool:
        if not isinstance(channel, amqp.Channel):
            return self.options.exchange in channel.get_exchanges()
        try:
            self._exchange(channel).declare(passive=True)
        except amqp.exceptions.NotFound:
            return False
        return True

    def validate_record(self, record: Mapping[str, Any]) -> list[str]:
        try:
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return [f"the record cannot be sent as JSON: {exc}"]
        return []

    def describe(self) -> str:
        o = self.options
        declared = "declared by the hub" if o.declare_exchange else "declared by the back office"
        return (f"{self.name}: AMQP publish to {o.exchange_type} exchange {o.exchange!r} ({declared}), routing key "
                f"{o.routing_key!r}, broker URL from ${o.url_env}; persistent JSON, publisher confirms, mandatory; "
                f"message_id is the idempotency key; timeout {o.timeout_seconds:g} s")

    def close(self) -> None:
        with self._lock:
            self._drop()


def _body(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def _open(connection: Connection) -> None:
    # one attempt, no sleeping between tries: the worker's backoff decides when to try again
    connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
