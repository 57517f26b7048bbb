"""One customer record through the hub's HTTP API, as the portal sees it: a signed-in resident's
submissions teach the hub their property, pre-fill answers from the record and from the waste
simulator over real SOAP (cached), "my requests" pages their submissions, tenants stay apart, bad
input is a problem naming every field, and erasing the resident removes all of it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.logs import configure
from hub.residents.config import LearnRule, Lookup, PrefillField, ResidentConfig, load_resident_config
from hub.residents.prefill import Prefiller
from hub.residents.record import learn, resident_digest
from hub.store import residents as store
from hub.store.tables import customer_links, resident_references, submissions
from simulators.soap_service import FailurePlan
from tests.support.privacy import add_staff
from tests.support.residents import KILN_LANE, ORCHARD_WAY, Portal, signed_in_resident


@pytest.fixture()
def portal(tmp_path: Path) -> Iterator[Portal]:
    with signed_in_resident(tmp_path) as running:
        yield running


def test_prefill_takes_the_uprn_from_the_record_and_the_address_from_the_waste_gazetteer(portal: Portal) -> None:
    garden = portal.prefill("garden-waste-subscription")
    assert garden.status_code == 200, garden.text
    # the newest accepted submission (the missed bin, taken by the CRM) gave the property
    assert garden.json() == {"form_id": "garden-waste-subscription", "unavailable": [], "fields": [
        {"pointer": "/uprn", "value": ORCHARD_WAY, "source": {"type": "record", "kind": "uprn", "connector": "crm"}}]}
    before = portal.bartec.summary()["requests"]
    bins = portal.prefill("missed-bin-collection").json()
    assert {f["pointer"]: f["value"] for f in bins["fields"]} == {
        "/address/line1": "14 ORCHARD WAY", "/address/town": "EASTMOOR", "/address/postcode": "EM1 4QT"}
    assert {json.dumps(f["source"], sort_keys=True) for f in bins["fields"]} == {
        json.dumps({"type": "lookup", "lookup": "premises-by-uprn", "connector": "waste"}, sort_keys=True)}
    assert portal.bartec.summary()["requests"] == before + 1


def test_a_lookup_answer_is_reused_briefly_and_a_back_office_down_leaves_its_fields_out(portal: Portal) -> None:
    first = portal.prefill("missed-bin-collection").json()
    portal.bartec.arm(FailurePlan(count=5, mode="server_fault"))
    # cached: the failing back office is not asked again
    assert portal.prefill("missed-bin-collection").json() == first
    # once the answer is older than cache_seconds, the back office is asked again
    cache = portal.hub.app.state.prefiller.cache
    moved = cache.clock() + cache.seconds + 1
    cache.clock = lambda: moved
    down = portal.prefill("missed-bin-collection")
    assert down.status_code == 200
    assert down.json() == {"form_id": "missed-bin-collection", "fields": [],
                           "unavailable": [{"lookup": "premises-by-uprn", "detail": "waste could not be asked just now"}]}


def test_my_requests_pages_the_residents_submissions_newest_first_with_back_office_references(portal: Portal) -> None:
    everything = portal.requests().json()
    assert [item["reference"] for item in everything["items"]] == [portal.missed_bin, portal.garden]
    assert everything["next_cursor"] is None
    bins, garden = everything["items"]
    assert bins["form_id"] == "missed-bin-collection" and bins["status"] == "sent"
    assert [r["connector"] for r in bins["references"]] == ["crm"] and bins["references"][0]["external_reference"]
    waste_ref = garden["references"][0]
    assert waste_ref["connector"] == "waste" and waste_ref["external_reference"] in portal.bartec.requests_made
    assert garden["deliveries"] == [{"connector": "waste", "state": "delivered"}]
    first = portal.requests(limit=1).json()
    assert [i["reference"] for i in first["items"]] == [portal.missed_bin] and first["next_cursor"]
    second = portal.requests(limit=1, before=first["next_cursor"]).json()
    assert [i["reference"] for i in second["items"]] == [portal.garden] and second["next_cursor"] is None


def test_a_back_office_status_is_what_my_requests_shows(portal: Portal) -> None:
    code = portal.requests().json()["items"][1]["references"][0]["external_reference"]
    assert portal.bartec.set_status(code, "ASSIGNED")
    # the waste connector is polled by the worker's status job; run one poll here
    from hub.delivery.status_polling import StatusPoller

    StatusPoller(portal.hub.runtime).run()
    garden = portal.requests().json()["items"][1]
    assert garden["status"] == "ASSIGNED" and garden["back_office_status"]["connector"] == "waste"


def test_another_tenants_portal_and_an_unknown_resident_are_not_found(portal: Portal) -> None:
    westvale = portal.hub.westvale_key
    for answer in (portal.requests(key=westvale), portal.prefill("missed-bin-collection", key=westvale),
                   portal.requests(subject="auth0|someone-else"), portal.prefill("missed-bin-collection", subject="nobody")):
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
        assert portal.subject not in answer.text
    # Westvale's portal may submit only missed-bin-collection: another form is not found for it
    assert portal.prefill("garden-waste-subscription", key=westvale).status_code == 404
    assert portal.prefill("no-such-form").status_code == 404


def test_bad_input_is_a_problem_naming_every_field(portal: Portal) -> None:
    answer = portal.requests(limit=0, before="abc")
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    assert {e["pointer"] for e in answer.json()["errors"]} == {"/query/limit", "/query/before"}
    missing = portal.get(f"/v1/residents/{portal.subject}/prefill")
    assert missing.status_code == 422 and [e["pointer"] for e in missing.json()["errors"]] == ["/query/form"]
    long = portal.requests(subject="x" * 256)
    assert long.status_code == 422 and [e["pointer"] for e in long.json()["errors"]] == ["/path/subject"]
    refused = portal.hub.post("missed-bin-collection", {}, headers={"Resident-Subject": "has space"})
    assert refused.status_code == 422
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/headers/resident-subject"]


def test_the_subject_never_reaches_a_log_line(tmp_path: Path) -> None:
    logs = io.StringIO()
    configure("debug", json=True, stream=logs)
    with signed_in_resident(tmp_path / "logged") as portal:
        portal.bartec.arm(FailurePlan(count=5, mode="server_fault"))
        assert portal.prefill("missed-bin-collection").json()["unavailable"]
        assert portal.requests().status_code == 200
        subject = portal.subject
    text = logs.getvalue()
    assert "prefill_lookup_failed" in text and "submission_accepted" in text
    for value in (subject, subject.split("|")[1], ORCHARD_WAY, KILN_LANE, "ORCHARD WAY"):
        assert value not in text


def test_erasing_the_resident_removes_the_record_and_links_and_strips_their_submissions(portal: Portal) -> None:
    hub = portal.hub
    assert portal.prefill("garden-waste-subscription").json()["fields"]
    admin = add_staff(hub, "em-admin", "eastmoor", "admin")
    assert hub.admin("POST", "/residents/erase", token=add_staff(hub, "em-ops", "eastmoor", "operator"),
                     json={"subject": portal.subject}).status_code == 403
    answer = hub.admin("POST", "/residents/erase", token=admin, json={"subject": portal.subject})
    assert answer.status_code == 200, answer.text
    assert answer.json()["erased"] == 2 and answer.json()["references_removed"] == 1
    assert portal.requests().status_code == 404 and portal.prefill("garden-waste-subscription").status_code == 404
    digest = resident_digest(hub.runtime.index_key, portal.subject)
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(resident_references)).all() == []
        assert conn.execute(select(customer_links).where(customer_links.c.digest == digest)).all() == []
        erased = conn.execute(select(submissions.c.erased_at)).scalars().all()
    assert len(erased) == 2 and all(erased)
    [entry] = hub.admin("GET", "/audit", params={"action": "subject.erase_record"}).json()
    assert portal.subject not in json.dumps(entry) and entry["detail"] == {"submissions": 2, "references_removed": 1}


def test_learn_records_reply_fields_for_the_resident_who_made_the_submission(portal: Portal) -> None:
    runtime = portal.hub.runtime
    config = ResidentConfig(learn=(LearnRule(connector="revenues", external_reference="council_tax_account",
                                             reply={"crm_contact_id": "Contact.Id"}),))
    with runtime.engine.begin() as conn:
        garden_id = conn.execute(select(submissions.c.id).where(submissions.c.reference == portal.garden)).scalar_one()
        found = learn(conn, runtime.sealer, config, tenant="eastmoor", submission_id=garden_id, connector="revenues",
                      external_reference="CT-4410021", reply={"Contact": {"Id": "C-77"}})
        # another tenant's id for the same submission finds no resident
        assert learn(conn, runtime.sealer, config, tenant="westvale", submission_id=garden_id, connector="revenues",
                     external_reference="CT-1", reply=None) == {}
    assert found == {"council_tax_account": "CT-4410021", "crm_contact_id": "C-77"}
    digest = resident_digest(runtime.index_key, portal.subject)
    with runtime.engine.connect() as conn:
        record = store.references(conn, runtime.sealer, "eastmoor", digest)
        stored = conn.execute(select(resident_references.c.value)).scalars().all()
    assert {k: v["value"] for k, v in record.items()} == {"council_tax_account": "CT-4410021", "crm_contact_id": "C-77"}
    # kept sealed, like payloads
    assert not any("CT-4410021" in value for value in stored)


class _Gazetteer:
    """A waste system whose premises lookup answers what the test says."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def lookup(self, operation: str, arguments: dict[str, object]) -> object:
        return self.answer


@pytest.mark.parametrize(("address", "line1"), [
    ({"Address2": None, "Street": "Kiln Lane", "Town": "Eastmoor", "PostCode": "EM1 4QT"}, "Kiln Lane"),
    ({"Address2": "Flat 2", "Street": "Kiln Lane", "Town": "Eastmoor", "PostCode": "EM1 4QT"}, "Flat 2 Kiln Lane"),
])
def test_a_premises_without_part_of_its_address_still_fills_what_it_has(address: dict[str, object], line1: str) -> None:
    # the shipped lookup once failed the whole pre-fill (a 500) when a premises had no house name
    config = load_resident_config(Path(__file__).resolve().parents[2] / "config")
    filler = Prefiller(config, lambda name: _Gazetteer({"Premises": [{"Address": address}]}))  # type: ignore[arg-type,return-value]
    record = {"uprn": {"value": "100012345678", "connector": "waste"}}
    filled = filler.fill("eastmoor", "digest", "missed-bin-collection", record)
    assert {field["pointer"]: field["value"] for field in filled.fields} == {
        "/address/line1": line1, "/address/town": "Eastmoor", "/address/postcode": "EM1 4QT"}
    assert filled.unavailable == []


def test_an_answer_an_expression_cannot_read_leaves_out_only_that_field() -> None:
    config = ResidentConfig(
        lookups={"premises": Lookup(connector="waste", operation="Premises_Get", needs="uprn", argument="UPRN",
                                    fields={"town": "Premises[0].Address.Town", "parts": "join(', ', Premises[0].Address.Town)"})},
        forms={"missed-bin-collection": (
            PrefillField(pointer="/address/town", lookup="premises", field="town"),
            PrefillField(pointer="/address/line1", lookup="premises", field="parts"),
        )},
    )
    filler = Prefiller(config, lambda name: _Gazetteer({"Premises": [{"Address": {"Town": "Eastmoor"}}]}))  # type: ignore[arg-type,return-value]
    filled = filler.fill("eastmoor", "digest", "missed-bin-collection", {"uprn": {"value": "1", "connector": "waste"}})
    assert [field["pointer"] for field in filled.fields] == ["/address/town"]
    nothing = Prefiller(config, lambda name: _Gazetteer({"Premises": []}))  # type: ignore[arg-type,return-value]
    assert nothing.fill("eastmoor", "digest", "missed-bin-collection", {"uprn": {"value": "1", "connector": "waste"}}).fields == []
