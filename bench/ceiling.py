"""The ceilings the hub is measured against, on the same machine in the same run: raw persistent
1 KB messages through RabbitMQ with publisher confirms (pika, kombu, py-amqp), consuming with acks,
and schema validation per submission (jsonschema-rs against python-jsonschema).
"""

from __future__ import annotations

import json
import time
from typing import Any

import amqp
import pika
from kombu.connection import Connection
from kombu.entity import Queue as KombuQueue
from kombu.messaging import Producer

from bench.hubproc import pika_parameters
from bench.payloads import payloads

QUEUE_ARGS = {"x-queue-type": "quorum"}


def _declare(broker_url: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    ch = conn.channel()
    ch.queue_delete(queue)
    ch.queue_declare(queue, durable=True, arguments=QUEUE_ARGS)
    conn.close()


def _ready(broker_url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    count = int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    conn.close()
    return count


def _rate(count: int, seconds: float) -> dict[str, float]:
    return {"messages": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}


def pika_one_by_one(broker_url: str, queue: str, body: bytes, count: int) -> dict[str, float]:
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    ch = conn.channel()
    ch.confirm_delivery()  # every basic_publish now waits for the broker's ack
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    started = time.perf_counter()
    for _ in range(count):
        ch.basic_publish("", queue, body, props, mandatory=False)
    seconds = time.perf_counter() - started
    conn.close()
    return _rate(count, seconds)


def kombu_one_by_one(broker_url: str, queue: str, body: bytes, count: int) -> dict[str, float]:
    """As the hub's relay publishes: kombu over py-amqp with confirm_publish."""
    with Connection(broker_url, transport_options={"confirm_publish": True}, heartbeat=0) as conn:
        producer = Producer(conn.default_channel)
        started = time.perf_counter()
        for _ in range(count):
            producer.publish(body, exchange="", routing_key=queue, delivery_mode=2, retry=False,
                             content_type="application/json", content_encoding="utf-8")
        seconds = time.perf_counter() - started
    return _rate(count, seconds)


def amqp_batched(broker_url: str, queue: str, body: bytes, count: int, window: int) -> dict[str, float]:
    """py-amqp with confirms: publish a window of messages, then wait for the broker's acks."""
    host = broker_url.split("@", 1)[1].split("/", 1)[0]
    conn = amqp.Connection(host=host, userid="guest", password="guest", virtual_host="/", confirm_publish=False)
    conn.connect()
    ch = conn.channel()
    ch.confirm_select()
    acked = [0]

    def on_ack(tag: int, multiple: bool) -> None:
        acked[0] = max(acked[0], tag)

    ch.events["basic_ack"].add(on_ack)
    started = time.perf_counter()
    sent = 0
    while sent < count:
        for _ in range(min(window, count - sent)):
            ch.basic_publish(amqp.Message(body, delivery_mode=2, content_type="application/json"),
                             exchange="", routing_key=queue)
            sent += 1
        while acked[0] < sent:
            conn.drain_events(timeout=30)
    seconds = time.perf_counter() - started
    conn.close()
    return {**_rate(count, seconds), "window": window}


def pika_consume(broker_url: str, queue: str, count: int, prefetch: int, ack_every: int) -> dict[str, float]:
    """Consumes `count` messages; acks each one, or every `ack_every` with multiple=True."""
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = 0
    started = time.perf_counter()
    for method, _props, _body in ch.consume(queue, inactivity_timeout=10):
        if method is None:
            break
        got += 1
        if got % ack_every == 0 or got == count:
            ch.basic_ack(method.delivery_tag, multiple=ack_every > 1)
        if got >= count:
            break
    seconds = time.perf_counter() - started
    ch.cancel()
    conn.close()
    return {**_rate(got, seconds), "prefetch": prefetch, "ack_every": ack_every}


def kombu_consume(broker_url: str, queue: str, count: int, prefetch: int) -> dict[str, float]:
    """As the hub's worker consumes: a kombu Consumer, one ack per message."""
    got = [0]

    def on_message(body: Any, message: Any) -> None:
        got[0] += 1
        message.ack()

    with Connection(broker_url, heartbeat=0) as conn:
        q = KombuQueue(queue, durable=True, queue_arguments=QUEUE_ARGS, no_declare=True)
        with conn.Consumer([q], callbacks=[on_message], accept=["json"], prefetch_count=prefetch):
            started = time.perf_counter()
            while got[0] < count:
                conn.drain_events(timeout=10)
            seconds = time.perf_counter() - started
    return {**_rate(got[0], seconds), "prefetch": prefetch, "ack_every": 1}


def broker(broker_url: str, count: int) -> dict[str, Any]:
    """Every broker figure on one quorum queue, which each publish adds to and each consume drains."""
    queue = "bench.ceiling"
    _declare(broker_url, queue)
    body = payloads(1)[0].ljust(1024)  # exactly 1 KB
    results: dict[str, Any] = {"message_bytes": len(body), "queue": "one durable quorum queue"}
    results["publish_pika_confirm_each"] = pika_one_by_one(broker_url, queue, body, count)
    results["publish_kombu_confirm_each"] = kombu_one_by_one(broker_url, queue, body, count)
    results["publish_amqp_confirm_batch_100"] = amqp_batched(broker_url, queue, body, count, 100)
    results["publish_amqp_confirm_batch_1000"] = amqp_batched(broker_url, queue, body, count * 2, 1000)
    results["consume_kombu_ack_each_prefetch_16"] = kombu_consume(broker_url, queue, count, 16)
    results["consume_pika_ack_each_prefetch_16"] = pika_consume(broker_url, queue, count, 16, 1)
    # whatever is left (a consumer may take a few more than asked from its prefetch)
    left = _ready(broker_url, queue)
    results["consume_pika_ack_multiple_50_prefetch_500"] = pika_consume(broker_url, queue, left, 500, 50)
    conn = pika.BlockingConnection(pika_parameters(broker_url))
    conn.channel().queue_delete(queue)
    conn.close()
    return results


def _time_per_call(fn: Any, items: list[Any], repeat: int) -> float:
    """Best of `repeat` passes over `items`, in microseconds per item."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def validation(count: int = 2000, repeat: int = 5) -> dict[str, Any]:
    """Microseconds per valid submission for each validator on the real schema."""
    from importlib import metadata

    import jsonschema_rs
    import orjson

    from bench.payloads import SCHEMA
    from bench.peer.schema import peer_validator
    from hub.intake.forms import compile_form

    schema = json.loads(SCHEMA.read_text())
    bodies = payloads(count, seed=99)
    docs = [orjson.loads(b) for b in bodies]
    rs = jsonschema_rs.validator_for(schema, validate_formats=True)
    form = compile_form("missed-bin-collection", 1, SCHEMA)
    py = peer_validator()
    few = docs[: max(50, count // 10)]  # python-jsonschema is slow: fewer items, same per-item figure
    return {
        "submissions": count,
        "jsonschema_rs_is_valid_us": round(_time_per_call(rs.is_valid, docs, repeat), 2),
        "jsonschema_rs_iter_errors_us": round(_time_per_call(lambda d: list(rs.iter_errors(d)), docs, repeat), 2),
        "hub_form_errors_us": round(_time_per_call(form.errors, docs, repeat), 2),
        "orjson_loads_us": round(_time_per_call(orjson.loads, bodies, repeat), 2),
        "python_jsonschema_iter_errors_us": round(_time_per_call(lambda d: list(py.iter_errors(d)), few, repeat), 2),
        "versions": {name: metadata.version(name) for name in ("jsonschema_rs", "jsonschema")},
    }
