"""Erasing a resident reaches every copy of their data, on the real PostgreSQL and RabbitMQ: with
one delivery retrying, one parked (after the back office quoted the resident back, and an
operator's replay), one waiting in the broker and webhook events queued, nothing readable of the
planted name or address is left in any table or queue; the retry, the message and a replay that
come later find the deliveries erased and send nothing."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from hub.config.files import RetryPolicy
from hub.privacy.subjects import ERASED_REASON
from hub.store import webhooks
from hub.store.tables import deliveries, metadata, outbox, submissions, webhook_deliveries
from tests.support.erasure import (
    ErasureHub,
    erasure_hub,
    peek_all,
    queue_names,
    queued_holding,
    sealed_count,
    table_names,
    tables_holding,
    wait_for,
)
from tests.support.privacy import add_staff, sample
from tests.support.servers import PostgresServer, RabbitMQServer

# retries come round within a few seconds, and never run out during the test
RETRY = RetryPolicy(max_attempts=50, base_seconds=1.0, cap_seconds=2.0)



class Resident:
    """A resident whose every answer is unique to this test run, so any copy of it can be found."""

    def __init__(self) -> None:
        letters = "".join(chr(ord("a") + int(c, 16)) for c in secrets.token_hex(8))
        tag = uuid.uuid4().hex
        # names take letters only; "ë" and "'" are there so a JSON-escaped copy differs from the plain one
        self.first = f"Zoë-zzplanted{letters}"
        self.last = f"O'Brien-zzplanted{letters[::-1]}"
        self.email = f"zz-planted-{tag}@example.org"
        self.note_tag = f"zzplantednote{letters}"
        # the parts no encoding changes, looked for as well as the whole answers
        self.planted = [self.first, self.last, self.email, f"zzplanted{letters}", f"zzplanted{letters[::-1]}", tag, self.note_tag]

    def payload(self, ask: str) -> Any:
        return sample(
            "missed-bin-collection", "general-uprn",
            name={"first": self.first, "last": self.last}, email=self.email, notes=f"{ask}: {self.note_tag}",
        )


@pytest.fixture()
def hub(tmp_path: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer) -> Iterator[ErasureHub]:
    with erasure_hub(tmp_path, postgres, rabbitmq, RETRY) as hub:
        hub.staff_token = add_staff(hub, "eastmoor-dpo", "eastmoor", "admin")
        yield hub


def deliveries_of(hub: ErasureHub, reference: str) -> list[Any]:
    with hub.runtime.engine.connect() as conn:
        query = (
            select(deliveries)
            .join(submissions, submissions.c.id == deliveries.c.submission_id)
            .where(submissions.c.reference == reference)
            .order_by(deliveries.c.id)
        )
        return list(conn.execute(query).all())


def state_of(hub: ErasureHub, reference: str) -> Any:
    (delivery,) = deliveries_of(hub, reference)
    return delivery


def outbox_rows(hub: ErasureHub) -> int:
    with hub.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def queues_empty(hub: ErasureHub, rabbitmq: RabbitMQServer) -> bool:
    return not peek_all(hub.broker_url, queue_names(rabbitmq, hub.runtime.settings.queue_prefix))


def subscribe_webhook(hub: ErasureHub) -> None:
    now = datetime.now(UTC)
    secret = webhooks.Secret("whsec_" + "A" * 32, now)
    hook = webhooks.Webhook("wh_" + secrets.token_hex(6), "eastmoor", "demo-portal", "http://127.0.0.1:9/hooks", webhooks.EVENT_TYPES, now, (secret,))
    webhooks.create(hub.runtime.engine, hub.runtime.sealer, hook)


def test_erase_leaves_no_copy_in_any_table_or_queue_and_later_retries_and_replays_find_it_erased(
    hub: ErasureHub, rabbitmq: RabbitMQServer
) -> None:
    resident = Resident()
    subscribe_webhook(hub)
    hub.start_worker()
    retrying = hub.submit(resident.payload("ask-503"))
    parked = hub.submit(resident.payload("ask-400"))
    wait_for(lambda: state_of(hub, retrying).state == "retrying", what="the 503 delivery to be retrying")
    wait_for(lambda: state_of(hub, parked).state == "parked", what="the 400 delivery to be parked")
    # an operator replays the parked delivery once; the back office refuses it again
    parked_id = state_of(hub, parked).id
    replayed = hub.admin("POST", f"/deliveries/{parked_id}/replay")
    assert replayed.status_code == 200, replayed.text
    wait_for(lambda: state_of(hub, parked).state == "parked" and state_of(hub, parked).attempts == 2, what="the replay to park again")
    hub.stop_worker()
    # no worker: this one's message waits in the connector's queue
    in_broker = hub.submit(resident.payload("ask-nothing"))
    wait_for(lambda: outbox_rows(hub) == 0, what="the relay to publish")
    assert state_of(hub, retrying).state == "retrying" and state_of(hub, in_broker).state == "pending"
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar_one() >= 2  # delivery.parked events
    sent_before = len(hub.back_office.received())
    assert any(resident.note_tag.encode() in body for body in hub.back_office.received())

    erased = hub.admin("POST", "/subjects/erase", json={"email": resident.email})

    assert erased.status_code == 200, erased.text
    answer = erased.json()
    assert answer["erased"] == 3 and {s["reference"] for s in answer["submissions"]} == {retrying, parked, in_broker}
    assert all(s["payload"] == "personal data removed" for s in answer["submissions"])
    # every table there is, not only those this test knows of
    assert set(metadata.tables) <= table_names(hub.runtime.engine)
    assert tables_holding(hub.runtime.engine, hub.sealer_keys, resident.planted) == []
    assert sealed_count(hub.runtime.engine, hub.sealer_keys) >= 3  # the search did open the sealed payloads
    queues = queue_names(rabbitmq, hub.runtime.settings.queue_prefix)
    messages = peek_all(hub.broker_url, queues)
    # the message published without a worker, and the retry waiting in a delay queue (or back already)
    assert len(messages) >= 2, (queues, messages)
    assert queued_holding(messages, hub.sealer_keys, resident.planted) == []

    # the retry comes due and the waiting message is consumed: both find the delivery erased
    hub.start_worker()
    wait_for(lambda: queues_empty(hub, rabbitmq), timeout=60, what="the worker to consume every message")
    for reference in (retrying, parked, in_broker):
        delivery = state_of(hub, reference)
        assert (delivery.state, delivery.last_error) == ("parked", ERASED_REASON), reference
    # an operator's replay of the parked delivery is refused as erased, one by one or in bulk
    again = hub.admin("POST", f"/deliveries/{parked_id}/replay")
    assert again.status_code == 409 and again.headers["content-type"].startswith("application/problem+json")
    assert "erased" in again.json()["detail"]
    bulk = hub.admin("POST", "/deliveries/replay", json={"connector": "crm"})
    assert bulk.status_code == 200 and bulk.json()["count"] == 0, bulk.text
    assert state_of(hub, parked).state == "parked" and outbox_rows(hub) == 0
    assert len(hub.back_office.received()) == sent_before
    assert tables_holding(hub.runtime.engine, hub.sealer_keys, resident.planted) == []


def test_a_delivery_of_an_erased_submission_put_back_to_pending_is_parked_as_erased_and_never_sent(
    hub: ErasureHub, rabbitmq: RabbitMQServer
) -> None:
    """However a delivery of an erased submission comes back (an old replay path, a restored
    backup, a hand-edited row), the worker parks it as erased rather than send what is left."""
    resident = Resident()
    reference = hub.submit(resident.payload("ask-nothing"))
    wait_for(lambda: outbox_rows(hub) == 0, what="the relay to publish")
    erased = hub.admin("POST", "/subjects/erase", json={"email": resident.email})
    assert erased.status_code == 200 and erased.json()["erased"] == 1, erased.text
    delivery = state_of(hub, reference)
    with hub.runtime.engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == delivery.id).values(state="pending", last_error=None))
        conn.execute(insert(outbox).values(delivery_id=delivery.id, connector=delivery.connector, available_at=datetime.now(UTC)))
    wait_for(lambda: outbox_rows(hub) == 0, what="the relay to publish again")
    hub.start_worker()
    wait_for(lambda: state_of(hub, reference).state == "parked", what="the worker to park it")
    assert state_of(hub, reference).last_error == ERASED_REASON
    wait_for(lambda: queues_empty(hub, rabbitmq), timeout=60, what="the worker to consume every message")
    assert hub.back_office.received() == []
