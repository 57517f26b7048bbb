"""Webhook events and status events on a real PostgreSQL: several senders claim side by side
(FOR UPDATE SKIP LOCKED) and no event is sent twice; a status pushed twice is stored once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook as StandardWebhook

from hub.config.files import RetryPolicy
from hub.config.settings import Settings
from hub.delivery.webhook_sender import WebhookSender, new_secret
from hub.runtime import Runtime
from hub.store import status_events, webhooks
from hub.store import submissions as submissions_store
from hub.store.migrate import upgrade
from hub.store.tables import deliveries, webhook_deliveries
from hub.store.tables import status_events as status_table
from tests.support.servers import PostgresServer
from tests.support.webhook_receiver import Receiver

_databases = count(1)


@pytest.fixture()
def runtime(postgres: PostgresServer) -> Iterator[Runtime]:
    settings = Settings(database_url=postgres.create_database(f"hub_webhooks_{next(_databases)}"))
    built = Runtime.build(settings, {})
    upgrade(built.engine)
    for name, tenant in list(built.config.tenants.items()):
        built.config.tenants[name] = tenant.model_copy(update={"allowed_hosts": ("127.0.0.1",)})
    yield built
    built.close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def delivered_submission(runtime: Runtime) -> status_events.Target:
    new = submissions_store.NewSubmission("eastmoor", "demo-portal", "general-enquiry", 1, "sealed", "a" * 64, None, ["crm"], "EDC")
    accepted = submissions_store.accept(runtime.engine, new)
    with runtime.engine.begin() as conn:
        conn.execute(deliveries.update().values(state="delivered", external_reference=f"CAS-{accepted.reference}"))
    target = status_events.find_target(runtime.engine, "crm", f"CAS-{accepted.reference}", None)
    assert target is not None
    return target


def test_two_senders_on_postgresql_never_send_the_same_event_twice(runtime: Runtime, receiver: Receiver) -> None:
    secret, now = new_secret(), datetime.now(UTC)
    webhooks.create(runtime.engine, runtime.sealer, webhooks.Webhook(
        "wh_pg", "eastmoor", "demo-portal", receiver.url, webhooks.EVENT_TYPES, now, (webhooks.Secret(secret, now),)))
    with runtime.engine.begin() as conn:
        for n in range(60):
            webhooks.enqueue(conn, "demo-portal", "delivery.delivered", f"msg_{n}", {"type": "delivery.delivered", "data": {"n": n}}, now)
    senders = [WebhookSender(runtime, policy=RetryPolicy(max_attempts=3, base_seconds=0.05, cap_seconds=0.1), batch=5) for _ in range(3)]

    def drain(sender: WebhookSender) -> None:
        while sender.run():
            pass

    threads = [threading.Thread(target=drain, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    ids = [r.headers["webhook-id"] for r in receiver.accepted()]
    assert sorted(ids) == sorted(f"msg_{n}" for n in range(60))
    assert all(StandardWebhook(secret).verify(r.body, r.headers) for r in receiver.accepted())
    with runtime.engine.connect() as conn:
        assert conn.execute(select(webhook_deliveries.c.state, func.count()).group_by(webhook_deliveries.c.state)).all() == [("delivered", 60)]


def test_a_status_recorded_twice_is_stored_and_announced_once(runtime: Runtime, receiver: Receiver) -> None:
    now = datetime.now(UTC)
    webhooks.create(runtime.engine, runtime.sealer, webhooks.Webhook(
        "wh_pg2", "eastmoor", "demo-portal", receiver.url, ("submission.status_changed",), now, (webhooks.Secret(new_secret(), now),)))
    target = delivered_submission(runtime)
    first = status_events.record(runtime.engine, target, "closed", None, now, "push", "same-key")
    again = status_events.record(runtime.engine, target, "closed", None, now, "push", "same-key")
    assert first.created and not again.created and first.id == again.id
    with runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(status_table)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar_one() == 1
    # closed is final: the poller leaves the record alone from now on
    assert status_events.pollable(runtime.engine, "crm", datetime(2000, 1, 1, tzinfo=UTC), 0, 10) == []
