"""The relay's messages: each connector's deliveries in claim order, a bounded number to a message."""

from __future__ import annotations

import orjson

from hub.delivery.worker import delivery_ids
from hub.relay.outbox_relay import messages
from hub.store.outbox import OutboxRow


def test_deliveries_share_messages_per_connector_in_claim_order_up_to_the_limit() -> None:
    rows = [OutboxRow(n, 100 + n, "crm" if n % 3 else "waste") for n in range(1, 13)]
    sent = [(key, orjson.loads(body)) for key, body in messages(rows, 3)]
    assert sent == [
        ("crm", {"delivery_ids": [101, 102, 104], "connector": "crm"}),
        ("crm", {"delivery_ids": [105, 107, 108], "connector": "crm"}),
        ("crm", {"delivery_ids": [110, 111], "connector": "crm"}),
        ("waste", {"delivery_ids": [103, 106, 109], "connector": "waste"}),
        ("waste", {"delivery_ids": [112], "connector": "waste"}),
    ]


def test_a_worker_reads_both_a_relay_message_and_a_single_delivery_back_from_a_delay_queue() -> None:
    assert delivery_ids({"delivery_ids": [7, 8], "connector": "crm"}) == [7, 8]
    assert delivery_ids({"delivery_id": 9, "connector": "crm"}) == [9]
