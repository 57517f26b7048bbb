"""Personal data from intake on: sealed at rest, linked by keyed digest, never echoed in errors,
logs or metrics, masked for staff below caseworker, and a payload no key opens parked plainly."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select

from hub.logs import configure
from hub.privacy.sealing import UNKNOWN_KEY, Sealer, subject_digest
from hub.store import submissions as store
from hub.store.tables import customer_links, status_events
from tests.support.embedded import EmbeddedHub
from tests.support.privacy import INDEX_KEY, add_staff, raw_database, row, sample, use_keys

KEY = Fernet.generate_key().decode()
NAME, EMAIL = "Plantedname Qzxwv", "planted.qzxwv@example.org"


@pytest.fixture()
def keyed(hub: EmbeddedHub) -> EmbeddedHub:
    use_keys(hub, KEY)
    return hub


def planted() -> Any:
    return sample("missed-bin-collection", "general-uprn", name={"first": NAME, "last": "Ocksby"}, email=EMAIL)


def test_a_submission_is_stored_sealed_and_linked_to_its_resident_by_keyed_digest_only(keyed: EmbeddedHub) -> None:
    hub = keyed
    reference = hub.post("missed-bin-collection", planted()).json()["reference"]
    hub.wait_until_settled(reference)
    stored = row(hub.runtime.engine, reference)
    assert Sealer.from_keys([KEY]).open(stored.payload)["email"] == EMAIL
    with hub.runtime.engine.connect() as conn:
        [link] = conn.execute(select(customer_links)).all()
    assert (link.tenant, link.submission_id, link.kind) == ("eastmoor", stored.id, "email")
    assert link.digest == subject_digest(INDEX_KEY, "email", " Planted.QZXWV@example.org ")
    # the database files, read raw, hold neither the name nor the address
    raw = raw_database(hub)
    assert NAME.encode() not in raw and EMAIL.encode() not in raw and b"07700 900123" not in raw


def test_invalid_x_pii_values_never_come_back_in_the_problem_nor_reach_logs_or_metrics(keyed: EmbeddedHub) -> None:
    hub = keyed
    logs = io.StringIO()
    configure("debug", json=True, stream=logs)
    bad = {**planted(), "email": f"{NAME} at home", "phone": f"call {NAME}", "name": {"first": NAME, "last": ["Ocksby"]}}
    answer = hub.post("missed-bin-collection", bad)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    pointers = {e["pointer"] for e in answer.json()["errors"]}
    assert {"/email", "/phone", "/name/last"} <= pointers
    assert NAME not in answer.text and "Ocksby" not in answer.text
    # a valid one is delivered, and its values are kept out of every log line too
    reference = hub.post("missed-bin-collection", planted()).json()["reference"]
    assert hub.wait_until_settled(reference)["deliveries"][0]["state"] == "delivered"
    # GOV.UK Forms and Open311 answer without the values as well
    govuk = sample("govuk-all-question-types", "every-answer", answers=[{"question_id": "4", "question_text": "Email", "answer_text": {"x": NAME}}])
    refused = hub.client.post("/v1/govuk-forms/submissions", json=govuk, headers={"Authorization": f"Bearer {hub.key}"})
    assert refused.status_code == 422 and NAME not in refused.text
    open311 = {"api_key": hub.key, "service_code": "fly-tipping", "lat": "51.5", "long": "-0.1", "email": f"{NAME} no at"}
    refused = hub.client.post("/open311/v2/requests.json", data=open311)
    assert refused.status_code == 400 and NAME not in refused.text
    metrics = hub.client.get("/metrics").text
    assert "missed-bin-collection" in metrics
    text = logs.getvalue()
    assert "submission_invalid" in text and "delivered" in text
    for value in (NAME, EMAIL, "Ocksby", "07700 900123"):
        assert value not in text and value not in metrics


def test_staff_below_caseworker_see_x_pii_values_hidden_caseworkers_see_them_and_each_view_is_audited(keyed: EmbeddedHub) -> None:
    hub = keyed
    viewer = add_staff(hub, "em-viewer", "eastmoor", "viewer")
    caseworker = add_staff(hub, "em-caseworker", "eastmoor", "caseworker")
    reference = hub.post("missed-bin-collection", planted()).json()["reference"]
    hub.wait_until_settled(reference)
    submission_id, now = row(hub.runtime.engine, reference).id, datetime.now(UTC)
    with hub.runtime.engine.begin() as conn:
        conn.execute(insert(status_events).values(
            tenant="eastmoor", submission_id=submission_id, status="closed", message=f"Bin emptied, {NAME} told",
            occurred_at=now, recorded_at=now, source="push", dedupe_key="t:1",
        ))

    masked = hub.admin("GET", f"/submissions/{reference}", token=viewer)
    assert masked.status_code == 200 and masked.json()["personal_data"] == "hidden"
    body = masked.json()
    assert body["payload"]["email"] == "[hidden]" and body["payload"]["name"] == "[hidden]" and body["payload"]["notes"] == "[hidden]"
    assert body["payload"]["bin_type"] == "general" and body["payload"]["address"] == {"uprn": "100023336956"}
    assert body["tenant"] == "eastmoor" and body["deliveries"][0]["state"] == "delivered"
    assert [(e["status"], e["message"]) for e in body["timeline"]] == [("closed", "[hidden]")]
    assert NAME not in masked.text and EMAIL not in masked.text
    assert hub.admin("GET", "/audit", params={"action": "submission.view"}).json() == []

    shown = hub.admin("GET", f"/submissions/{reference}", token=caseworker).json()
    assert shown["personal_data"] == "shown" and shown["payload"]["email"] == EMAIL
    assert shown["timeline"][0]["message"] == f"Bin emptied, {NAME} told"
    [entry] = hub.admin("GET", "/audit", params={"action": "submission.view"}).json()
    assert entry["actor"] == "staff:em-caseworker" and entry["target"] == reference and entry["tenant"] == "eastmoor"


def test_a_reference_of_another_tenant_is_not_found_for_staff_of_this_tenant(keyed: EmbeddedHub) -> None:
    hub = keyed
    westvale_caseworker = add_staff(hub, "wv-caseworker", "westvale", "caseworker")
    reference = hub.post("missed-bin-collection", planted()).json()["reference"]
    for token in (hub.westvale_staff_token, westvale_caseworker):
        answer = hub.admin("GET", f"/submissions/{reference}", token=token)
        assert answer.status_code == 404 and answer.json()["type"] == "/problems/not-found"
        assert EMAIL not in answer.text
    # staff who work for every tenant find it; nobody finds a reference that does not exist
    assert hub.admin("GET", f"/submissions/{reference}").json()["reference"] == reference
    assert hub.admin("GET", "/submissions/EDC-0000000000").status_code == 404
    assert hub.admin("GET", "/submissions/" + "X" * 40).status_code == 422
    assert hub.client.get(f"/v1/admin/submissions/{reference}").status_code == 401


def test_a_delivery_whose_payload_no_key_opens_is_parked_with_a_plain_reason_and_staff_still_get_an_answer(keyed: EmbeddedHub) -> None:
    hub = keyed
    lost = Sealer.from_keys([Fernet.generate_key().decode()])
    new = store.NewSubmission(
        tenant="eastmoor", client_id="demo-portal", form_id="missed-bin-collection", form_version=1,
        sealed_payload=lost.seal(planted()), body_sha256="0" * 64, idempotency_key=None, connectors=["crm"], reference_prefix="EDC",
    )
    reference = store.accept(hub.runtime.engine, new).reference
    hub.relay.wake()
    [delivery] = hub.wait_until_settled(reference)["deliveries"]
    assert delivery["state"] == "parked" and delivery["last_error"] == UNKNOWN_KEY and delivery["attempts"] == 1
    assert hub.crm.cases() == []
    shown = hub.admin("GET", f"/submissions/{reference}")
    assert shown.status_code == 200 and shown.json()["payload"] is None and shown.json()["payload_error"] == UNKNOWN_KEY
    assert json.loads(shown.text)["deliveries"][0]["last_error"] == UNKNOWN_KEY
