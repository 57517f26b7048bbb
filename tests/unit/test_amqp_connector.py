"""The AMQP push connector on kombu's in-process transport (as in the demo): what it publishes, and
what it refuses; the same against a real RabbitMQ is in tests/integration."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import amqp.exceptions
import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from connectors.amqp import AmqpConnector
from connectors.base import DeliveryContext, Secrets
from connectors.registry import ConnectorRegistry
from hub.config.files import ConnectorConfig
from hub.errors import ConfigError, PermanentError, TransientError
from simulators.backoffice_amqp import AmqpBackOffice

REGISTRY = ConnectorRegistry.from_entry_points()


@pytest.fixture()
def exchange() -> str:
    # the in-process broker is shared by the whole test process: a fresh name per test
    return f"revenues-benefits-{secrets.token_hex(4)}"


def build(exchange: str, env: dict[str, str] | None = None, **options: Any) -> AmqpConnector:
    config = ConnectorConfig(
        name="benefits-amqp",
        type="amqp",
        options={"url_env": "RB_AMQP_URL", "exchange": exchange, "routing_key": "{tenant}.{form_id}", **options},
    )
    built = REGISTRY.build(config, Secrets({"RB_AMQP_URL": "memory://"} if env is None else env))
    assert isinstance(built, AmqpConnector)
    return built


def context(reference: str = "EDC-9WNC4HJT5F", tenant: str = "eastmoor") -> DeliveryContext:
    return DeliveryContext(reference, "benefits-amqp", 3, f"{reference}/benefits-amqp", 1, tenant, "benefits-change-of-circumstances")


@pytest.fixture()
def bound_queue(exchange: str) -> Iterator[Any]:
    with Connection("memory://") as connection:
        queue = Queue(f"{exchange}.changes", Exchange(exchange, type="topic", durable=True), routing_key="eastmoor.#", durable=True)
        bound = queue(connection.default_channel)
        bound.declare()
        yield bound


def test_the_record_is_published_as_persistent_json_with_the_idempotency_key_as_message_id(exchange: str, bound_queue: Any) -> None:
    connector = build(exchange)
    outcome = connector.send({"claim_reference": "HB20345678", "claimant": {"first_name": "Siân"}}, context())
    message = bound_queue.get(no_ack=True)
    assert message is not None and outcome.external_reference is None
    assert message.payload == {"claim_reference": "HB20345678", "claimant": {"first_name": "Siân"}}
    assert message.content_type == "application/json"
    assert message.properties["message_id"] == "EDC-9WNC4HJT5F/benefits-amqp"
    assert message.properties["delivery_mode"] == 2
    assert message.delivery_info["routing_key"] == "eastmoor.benefits-change-of-circumstances"
    assert message.headers == {"x-hub-reference": "EDC-9WNC4HJT5F", "x-hub-form": "benefits-change-of-circumstances", "x-hub-tenant": "eastmoor"}
    connector.close()


def test_a_record_nobody_is_bound_to_receive_parks_with_the_routing_key(exchange: str, bound_queue: Any) -> None:
    connector = build(exchange)
    with pytest.raises(PermanentError, match=r"no queue bound for routing key 'westvale\.benefits-change-of-circumstances'"):
        connector.send({"claim_reference": "30045123"}, context("WBC-3RQP8XKT2E", tenant="westvale"))
    assert bound_queue.get(no_ack=True) is None


def test_a_missing_exchange_parks_unless_the_hub_declares_it(exchange: str) -> None:
    with pytest.raises(PermanentError, match=f"exchange '{exchange}' does not exist"):
        build(exchange).send({"a": 1}, context())
    assert build(exchange).check().ok is False
    declaring = build(exchange, declare_exchange=True)
    assert declaring.check().ok is True
    with pytest.raises(PermanentError, match="no queue bound"):
        declaring.send({"a": 1}, context())
    assert "exists" in build(exchange).check().detail


def test_the_broker_url_is_a_secret_named_by_variable_and_a_missing_one_is_a_configuration_error(exchange: str) -> None:
    connector = build(exchange, env={})
    with pytest.raises(ConfigError, match="RB_AMQP_URL"):
        connector.send({"a": 1}, context())
    health = connector.check()
    assert not health.ok and "RB_AMQP_URL" in health.detail
    assert "$RB_AMQP_URL" in connector.describe() and "memory" not in connector.describe()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"routing_key": "{form}"}, "routing_key may use only"),
        ({"routing_key": "{form_id.__class__}"}, "routing_key may use only"),
        ({"url_env": "amqp://guest:guest@localhost//"}, "url_env"),
        ({"exchange_type": "fan-out"}, "exchange_type"),
        ({"url": "amqp://guest:guest@localhost//"}, "Extra inputs are not permitted"),
    ],
)
def test_options_that_cannot_work_are_refused_when_the_configuration_loads(exchange: str, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        build(exchange, **options)


def test_the_simulated_back_office_consumes_acks_and_drops_resends_by_message_id(exchange: str) -> None:
    office = AmqpBackOffice("memory://", exchange, queue=f"{exchange}.office").start()
    connector = build(exchange)
    try:
        connector.send({"n": 1}, context())
        connector.send({"n": 1}, context())  # the same delivery sent again
        connector.send({"n": 2}, context("EDC-2RKD8WNX5P"))
        for _ in range(100):
            if office.stats()["messages"] == 3:
                break
            office._stop.wait(0.05)
    finally:
        office.stop()
        connector.close()
    assert office.stats() == {"records": 2, "messages": 3, "duplicates": 1}
    assert [a.record for a in office.arrived()] == [{"n": 1}, {"n": 2}]
    assert office.arrived()[0].headers["x-hub-reference"] == "EDC-9WNC4HJT5F"


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (amqp.exceptions.NotFound("NOT_FOUND - no exchange"), PermanentError, "does not exist"),
        (amqp.exceptions.AccessRefused("ACCESS_REFUSED"), PermanentError, "refused the credentials or permissions"),
        (amqp.exceptions.PreconditionFailed("PRECONDITION_FAILED - inequivalent arg 'type'"), PermanentError, "exists with other settings"),
        (amqp.exceptions.MessageNacked(), TransientError, "a queue may be full"),
        (TimeoutError("timed out"), TransientError, "no answer from the broker within 10 s"),
        (ConnectionRefusedError(111, "Connection refused"), TransientError, "could not reach the broker: Connection refused"),
        (amqp.exceptions.RecoverableConnectionError("connection already closed"), TransientError, "lost the broker connection"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_broker_failures_are_retried_or_parked_by_what_went_wrong(exchange: str, error: BaseException, kind: type, reason: str) -> None:
    classified = build(exchange).classify(error)
    assert type(classified) is kind and reason in classified.reason
