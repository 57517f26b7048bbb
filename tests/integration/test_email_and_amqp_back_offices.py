"""E-mail and AMQP back offices over real sockets: a real SMTP server (the aiosmtpd sink, with
STARTTLS, TLS and AUTH), the whole hub in-process, and a real RabbitMQ read with pika, the client
back-office teams use, not with the hub's own code."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from connectors.amqp import AmqpConnector
from connectors.base import DeliveryContext, Secrets
from connectors.email import EmailConnector
from connectors.registry import ConnectorRegistry
from hub.config.files import ConnectorConfig
from hub.errors import PermanentError, TransientError
from simulators import backoffice_amqp, mail
from simulators.mail import MailSink
from tests.support import embedded
from tests.support.servers import RabbitMQServer
from tests.support.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ConnectorRegistry.from_entry_points()
RECORD = {"reference": "EDC-4M7QK2XW9A", "name": "Siân Ŵyn", "occupants": [{"name": "Siân Ŵyn", "date_of_birth": "1991-04-02"}]}


def context(reference: str = "EDC-4M7QK2XW9A", connector: str = "mailbox", form: str = "council-tax-moving-home") -> DeliveryContext:
    return DeliveryContext(reference, connector, 1, f"{reference}/{connector}", 1, "eastmoor", form)


def email_connector(port: int, env: dict[str, str] | None = None, **options: Any) -> EmailConnector:
    config = ConnectorConfig(name="mailbox", type="email", options={
        "host": "127.0.0.1", "port": port, "timeout_seconds": 5,
        "from_address": "forms-hub@eastmoor.example.org", "to": ["counciltax@eastmoor.example.org"],
        "subject": "Moving: {{ record.name }}", "body_template": "{{ record.name }} ({{ context.reference }})\n", **options})
    built = REGISTRY.build(config, Secrets(env or {}))
    assert isinstance(built, EmailConnector)
    return built


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1, made now: the CA file a council would configure."""
    return self_signed(tmp_path_factory.mktemp("tls"), "mail-sink.invalid")


# -- e-mail, connector against the sink -------------------------------------------------------


def test_the_team_receives_the_message_with_its_record_attached(sink: MailSink) -> None:
    outcome = email_connector(sink.port).send(RECORD, context())
    [received] = sink.state.messages()
    assert received.rcpt_tos == ["counciltax@eastmoor.example.org"] and received.subject == "Moving: Siân Ŵyn"
    assert received.message.get_body(("plain",)).get_content().splitlines() == ["Siân Ŵyn (EDC-4M7QK2XW9A)"]
    assert json.loads(received.attachment("record.json")) == RECORD
    assert received.attachment("record.csv").decode("utf-8-sig").splitlines()[1].startswith("EDC-4M7QK2XW9A,Siân Ŵyn,")
    assert received.message["X-Idempotency-Key"] == "EDC-4M7QK2XW9A/mailbox"
    assert outcome.external_reference == received.message_id


def test_a_resend_of_the_same_delivery_is_recognised_by_its_message_id(sink: MailSink) -> None:
    connector = email_connector(sink.port)
    connector.send(RECORD, context())
    connector.send(RECORD, context())
    connector.send(RECORD, context("EDC-8TZC3RNV6B"))
    assert sink.state.stats() == {"messages": 2, "arrived": 3, "duplicates": 1, "refused": 0}


@pytest.mark.parametrize(
    ("code", "stage", "kind", "reason"),
    [
        (451, "rcpt", TransientError, "deferred the recipients: counciltax@eastmoor.example.org: 451 4.3.0"),
        (550, "rcpt", PermanentError, "refused the recipients: counciltax@eastmoor.example.org: 550 5.1.1"),
        (451, "data", TransientError, "answered: 451 4.3.0"),
        (554, "data", PermanentError, "answered: 554 5.1.1"),
    ],
)
def test_what_the_mail_server_answers_decides_retry_or_park(sink: MailSink, code: int, stage: Any, kind: type, reason: str) -> None:
    sink.state.fail(1, code, stage)
    with pytest.raises(kind, match=reason):
        email_connector(sink.port).send(RECORD, context())
    assert sink.state.messages() == []


def test_starttls_and_login_with_the_councils_own_ca(certificate: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, tls = certificate
    server = MailSink(tls_context=tls, credentials=("hub", "s3cret-pass")).start()
    try:
        secured = {"starttls": True, "ca_file": str(ca_file), "username": "hub", "password_env": "SMTP_PASSWORD"}
        good = email_connector(server.port, {"SMTP_PASSWORD": "s3cret-pass"}, **secured)
        assert good.check().ok and "TLS, logged in" in good.check().detail
        good.send(RECORD, context())
        with pytest.raises(PermanentError, match="rejected the login: 535"):
            email_connector(server.port, {"SMTP_PASSWORD": "wrong"}, **secured).send(RECORD, context("EDC-8TZC3RNV6B"))
        with pytest.raises(PermanentError, match="certificate that is not trusted"):
            email_connector(server.port, {"SMTP_PASSWORD": "s3cret-pass"}, **{**secured, "ca_file": None}).send(RECORD, context())
        with pytest.raises(PermanentError, match="530"):  # the sink requires a login
            email_connector(server.port, starttls=True, ca_file=str(ca_file)).send(RECORD, context())
    finally:
        server.stop()
    assert server.state.stats()["messages"] == 1


def test_implicit_tls_from_the_first_byte(certificate: tuple[Path, ssl.SSLContext]) -> None:
    ca_file, tls = certificate
    server = MailSink(tls_context=tls, implicit_tls=True).start()
    try:
        email_connector(server.port, ssl=True, ca_file=str(ca_file)).send(RECORD, context())
    finally:
        server.stop()
    assert len(server.state.messages()) == 1


def test_a_mail_server_that_is_down_or_silent_is_retried_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never says hello
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TransientError, match="no reply from mail server .* within 1 s"):
            email_connector(port, timeout_seconds=1).send(RECORD, context())
        assert time.monotonic() - started < 3
        health = email_connector(port, timeout_seconds=1).check()
    assert not health.ok and "no reply" in health.detail
    with pytest.raises(TransientError, match="could not reach mail server 127.0.0.1:.*: Connection refused"):
        email_connector(port).send(RECORD, context())


# -- e-mail and AMQP through the whole hub ----------------------------------------------------


@contextmanager
def hub_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]) -> Iterator[embedded.EmbeddedHub]:
    """The embedded hub with our back offices' variables added to its environment.
    (Until embedded_hub takes extra variables itself, its two uses of the environment are wrapped.)"""
    load, build = embedded.load_config, embedded.Runtime.build
    monkeypatch.setattr(embedded, "load_config", lambda directory, env: load(directory, {**env, **extra}))
    monkeypatch.setattr(embedded.Runtime, "build", lambda settings, env, **kw: build(settings, {**env, **extra}, **kw))
    with embedded.embedded_hub(tmp_path) as hub:
        yield hub


def sample(form: str, name: str) -> Any:
    return json.loads((ROOT / "schemas" / form / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def test_a_deferred_message_is_retried_and_an_unknown_mailbox_parks_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink: MailSink) -> None:
    with hub_with(tmp_path, monkeypatch, {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port)}) as hub:
        sink.state.fail(1, 451)
        first = hub.post("council-tax-moving-home", sample("council-tax-moving-home", "moving-in-uprn")).json()["reference"]
        [delivered] = hub.wait_until_settled(first)["deliveries"]
        sink.state.fail(1, 550)
        second = hub.post("complaint-or-compliment", sample("complaint-or-compliment", "compliment-library")).json()["reference"]
        [parked] = hub.wait_until_settled(second)["deliveries"]
    assert (delivered["connector"], delivered["state"], delivered["attempts"]) == ("council-tax-email", "delivered", 2)
    [message] = sink.state.messages()
    assert delivered["external_reference"] == message.message_id and message.message["X-Hub-Reference"] == first
    assert message.rcpt_tos == ["counciltax@eastmoor.example.org"]
    assert (parked["connector"], parked["state"], parked["attempts"]) == ("feedback-email", "parked", 1)
    assert "550 5.1.1" in parked["last_error"] and "customer.feedback@eastmoor.example.org" in parked["last_error"]


def test_every_sample_of_the_four_forms_reaches_its_demo_back_office(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {backoffice_amqp.EXCHANGE_ENV: f"revenues-benefits-{secrets.token_hex(3)}"}
    offices = mail.demo(env) + backoffice_amqp.demo(env)
    forms = ["council-tax-moving-home", "benefits-change-of-circumstances", "complaint-or-compliment", "general-enquiry"]
    try:
        with hub_with(tmp_path, monkeypatch, env) as hub:
            posted = [hub.post(f, sample(f, p.stem)).json()["reference"] for f in forms for p in sorted((ROOT / "schemas" / f / "samples").glob("*.json"))]
            deliveries = [d for reference in posted for d in hub.wait_until_settled(reference)["deliveries"]]
            deadline = time.monotonic() + 10  # the consumer acks in its own thread, just after the confirm
            while offices[1].office.stats()["records"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            summaries = [office.summary() for office in offices]
    finally:
        for office in offices:
            office.stop()
    assert len(posted) == 12 and [d["state"] for d in deliveries] == ["delivered"] * 12
    assert sorted({d["connector"] for d in deliveries}) == ["benefits-amqp", "council-tax-email", "crm", "feedback-email"]
    assert summaries[0].startswith("6 message(s): 3 to counciltax@eastmoor.example.org, 3 to customer.feedback@eastmoor.example.org")
    assert summaries[1].startswith("3 record(s) consumed (3 on eastmoor.benefits-change-of-circumstances)")


# -- AMQP against a real RabbitMQ, consumed with pika -----------------------------------------


@pytest.fixture()
def consumer(rabbitmq: RabbitMQServer) -> Iterator[tuple[str, Any]]:
    """The back office's side, as docs/amqp-consumer.md shows it: exchange, quorum queue, binding."""
    exchange = f"revenues-benefits-{secrets.token_hex(3)}"
    connection = pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{rabbitmq.host}:{rabbitmq.port}/%2F"))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(f"{exchange}.changes", durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(f"{exchange}.changes", exchange, routing_key="*.benefits-change-of-circumstances")
    yield exchange, channel
    # a fresh connection: a test may have restarted the broker under the first one
    with pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{rabbitmq.host}:{rabbitmq.port}/%2F")) as cleanup:
        cleanup.channel().queue_delete(f"{exchange}.changes")
        cleanup.channel().exchange_delete(exchange)
    try:
        connection.close()
    except pika.exceptions.AMQPError:
        pass


def amqp_connector(url: str, exchange: str, **options: Any) -> AmqpConnector:
    config = ConnectorConfig(name="benefits-amqp", type="amqp", options={
        "url_env": "RB_AMQP_URL", "exchange": exchange, "routing_key": "{tenant}.{form_id}", "timeout_seconds": 5, **options})
    built = REGISTRY.build(config, Secrets({"RB_AMQP_URL": url}))
    assert isinstance(built, AmqpConnector)
    return built


def take(channel: Any, queue: str, timeout: float = 10) -> tuple[Any, Any, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            channel.basic_ack(method.delivery_tag)
            return method, properties, body
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived on {queue}")


def test_the_back_office_reads_the_record_with_pika_as_persistent_json_keyed_by_message_id(rabbitmq: RabbitMQServer, consumer: tuple[str, Any]) -> None:
    exchange, channel = consumer
    connector = amqp_connector(rabbitmq.url, exchange)
    record = json.loads((ROOT / "mappings" / "benefits-change-of-circumstances.benefits-amqp.cases" / "new-job-income.json").read_text())["expected"]
    try:
        assert connector.check().ok
        connector.send(record, context("EDC-9WNC4HJT5F", "benefits-amqp", "benefits-change-of-circumstances"))
    finally:
        connector.close()
    method, properties, body = take(channel, f"{exchange}.changes")
    assert json.loads(body) == record and method.routing_key == "eastmoor.benefits-change-of-circumstances"
    assert (properties.content_type, properties.delivery_mode, properties.message_id) == ("application/json", 2, "EDC-9WNC4HJT5F/benefits-amqp")
    # (a quorum queue adds its own x-delivery-count)
    assert {k: v for k, v in properties.headers.items() if k.startswith("x-hub-")} == {"x-hub-reference": "EDC-9WNC4HJT5F", "x-hub-form": "benefits-change-of-circumstances", "x-hub-tenant": "eastmoor"}


def test_a_record_no_queue_is_bound_for_or_an_exchange_that_is_missing_parks(rabbitmq: RabbitMQServer, consumer: tuple[str, Any]) -> None:
    exchange, _ = consumer
    connector = amqp_connector(rabbitmq.url, exchange)
    missing = amqp_connector(rabbitmq.url, exchange + "-missing")
    try:
        with pytest.raises(PermanentError, match=f"no queue bound for routing key 'eastmoor.garden-waste' on exchange '{exchange}'"):
            connector.send({"a": 1}, context("EDC-1", "benefits-amqp", "garden-waste"))
        connector.send({"a": 2}, context("EDC-2", "benefits-amqp", "benefits-change-of-circumstances"))  # the connection goes on
        with pytest.raises(PermanentError, match="does not exist"):
            missing.send({"a": 3}, context("EDC-3", "benefits-amqp", "benefits-change-of-circumstances"))
        assert not missing.check().ok
        with pytest.raises(PermanentError, match="refused the credentials"):
            amqp_connector(rabbitmq.url.replace("guest:guest", "guest:wrong"), exchange).send({"a": 4}, context())
    finally:
        connector.close()
        missing.close()


def test_a_stopped_broker_is_retried_and_the_connector_reconnects_when_it_is_back(rabbitmq: RabbitMQServer, consumer: tuple[str, Any]) -> None:
    exchange, _ = consumer
    connector = amqp_connector(rabbitmq.url, exchange)
    connector.send({"n": 1}, context("EDC-1", "benefits-amqp", "benefits-change-of-circumstances"))
    rabbitmq.stop()
    try:
        with pytest.raises(TransientError, match="broker"):
            connector.send({"n": 2}, context("EDC-2", "benefits-amqp", "benefits-change-of-circumstances"))
        with pytest.raises(TransientError, match="could not reach the broker"):
            connector.send({"n": 2}, context("EDC-2", "benefits-amqp", "benefits-change-of-circumstances"))
        assert not connector.check().ok
    finally:
        rabbitmq.start()
    connector.send({"n": 2}, context("EDC-2", "benefits-amqp", "benefits-change-of-circumstances"))
    connector.close()
    with pika.BlockingConnection(pika.URLParameters(f"amqp://guest:guest@{rabbitmq.host}:{rabbitmq.port}/%2F")) as connection:
        channel = connection.channel()
        bodies = [json.loads(take(channel, f"{exchange}.changes")[2]) for _ in range(2)]
    assert bodies == [{"n": 1}, {"n": 2}]  # the durable quorum queue kept the first across the restart
