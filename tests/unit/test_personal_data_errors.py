"""A back office that quotes the resident's answers in its refusal: the reason the hub stores and
shows staff and the front end has those answers blanked, as the logs have."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.base import DeliveryContext, Outcome
from hub.config.settings import Settings
from hub.errors import PermanentError
from hub.store.tables import attempts, deliveries
from tests.support.embedded import EmbeddedHub, embedded_hub

SAMPLE = json.loads((Settings().schemas_dir / "general-enquiry" / "samples" / "question-only.json").read_text())


class QuotingBackOffice:
    """Refuses every record, quoting the name and address it was sent, as some CRMs do."""

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        raise PermanentError(f"crm reported a failure: customer {json.dumps(record)[:400]} is a duplicate")

    def close(self) -> None:
        pass


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with embedded_hub(tmp_path) as running:
        running.runtime._connectors["crm"] = QuotingBackOffice()  # type: ignore[assignment]
        yield running


def test_a_refusal_quoting_the_residents_answers_is_stored_with_them_blanked(hub: EmbeddedHub) -> None:
    reference = hub.post("general-enquiry", SAMPLE).json()["reference"]
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "parked" and "is a duplicate" in delivery["last_error"]
    assert "[redacted]" in delivery["last_error"]
    personal = ["Jamal", "Haddad", "Flat 5, Beech Court", "YO8 2LP"]
    with hub.runtime.engine.connect() as conn:
        stored = [conn.execute(select(deliveries.c.last_error)).scalar_one(), *conn.execute(select(attempts.c.error)).scalars()]
    shown = [delivery["last_error"], hub.admin("GET", "/deliveries").text]
    assert [value for value in personal for text in stored + shown if value in text] == []
