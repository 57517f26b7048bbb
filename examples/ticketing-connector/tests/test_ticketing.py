"""The example connector against the hub's connector kit: the whole contract, then what is its own."""

from __future__ import annotations

import json

from eastmoor_ticketing import TicketingConnector

from connectors import kit

RECORD = {"subject": "Missed bin", "text": "Blue bin not collected"}
TOKEN = "ticketing-" + "5f1c9a"


def test_the_ticketing_connector_keeps_the_hubs_contract() -> None:
    with kit.FakeBackOffice(body=b'{"ticket": {"id": "TKT-1"}}') as office:
        connector = kit.build(TicketingConnector, {"url": office.url, "token_env": "TICKETING_TOKEN", "timeout_seconds": 1},
                              env={"TICKETING_TOKEN": TOKEN})
        kit.assert_keeps_the_contract(connector, RECORD, office, secrets=[TOKEN])


def test_a_ticket_carries_the_record_and_the_deliverys_idempotency_key() -> None:
    with kit.FakeBackOffice(body=b'{"ticket": {"id": "TKT-42"}}') as office:
        connector = kit.build(TicketingConnector, {"url": office.url, "token_env": "TICKETING_TOKEN"}, env={"TICKETING_TOKEN": TOKEN})
        outcome = connector.send(RECORD, kit.context(connector, reference="EDC-TICKET0001"))
    assert outcome.external_reference == "TKT-42"
    [sent] = office.received
    assert sent.headers["idempotency-key"] == "EDC-TICKET0001/under-test"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent.body) == {"queue": "customer-services", "reference": "EDC-TICKET0001", "record": RECORD}
