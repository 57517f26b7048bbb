"""A resident's subject access and erasure requests, made by staff through the admin API and by
ICT with `hub subjects`: one tenant's submissions only, and every erasure in the audit log."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub.config.files import RetentionRule, RetryPolicy
from hub.privacy.retention import scheduled
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub
from tests.support.privacy import INDEX_KEY, add_staff, links_of, raw_database, row, sample, use_keys

KEY = Fernet.generate_key().decode()
NAME, EMAIL = "Plantedname Qzxwv", "planted.qzxwv@example.org"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Resident:
    hub: EmbeddedHub
    bins: str
    tipping: str
    westvale: str
    neighbour: str
    caseworker: str
    admin: str


@pytest.fixture()
def resident(hub: EmbeddedHub) -> Resident:
    """One resident's submissions to two councils, and a neighbour's, all delivered."""
    use_keys(hub, KEY)
    person = {"name": {"first": NAME, "last": "Ocksby"}, "email": EMAIL}
    bins = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn", **person)).json()["reference"]
    tipping_payload = sample("report-fly-tipping", "uprn-with-reporter", reporter={**person, "email": EMAIL.upper()})
    tipping = hub.post("report-fly-tipping", tipping_payload).json()["reference"]
    westvale = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn", **person), key=hub.westvale_key).json()["reference"]
    neighbour = hub.post("missed-bin-collection", sample("missed-bin-collection", "garden-uprn")).json()["reference"]
    for reference in (bins, tipping, neighbour):
        hub.wait_until_settled(reference)
    while hub.status(westvale, key=hub.westvale_key).json()["deliveries"][0]["state"] != "delivered":
        time.sleep(0.05)
    return Resident(
        hub, bins, tipping, westvale, neighbour,
        add_staff(hub, "em-caseworker", "eastmoor", "caseworker"), add_staff(hub, "em-admin", "eastmoor", "admin"),
    )


def test_an_export_holds_every_submission_of_the_resident_in_the_staff_members_tenant_only(resident: Resident) -> None:
    hub = resident.hub
    answer = hub.admin("POST", "/subjects/export", token=resident.caseworker, json={"email": f"  {EMAIL.title()} "})
    assert answer.status_code == 200
    body = answer.json()
    assert body["tenant"] == "eastmoor" and [s["reference"] for s in body["submissions"]] == [resident.bins, resident.tipping]
    bins, tipping = body["submissions"]
    assert bins["form_id"] == "missed-bin-collection" and bins["payload"]["email"] == EMAIL and bins["purged_at"] is None
    assert tipping["payload"]["reporter"]["email"] == EMAIL.upper()
    assert {d["connector"]: d["state"] for d in tipping["deliveries"]} == {"crm": "delivered", "street-cleansing": "parked"}
    assert "timeline" in bins and bins["received_at"]
    [entry] = hub.admin("GET", "/audit", params={"action": "subject.export"}).json()
    assert entry["actor"] == "staff:em-caseworker" and entry["tenant"] == "eastmoor" and entry["detail"]["submissions"] == 2
    assert EMAIL not in json.dumps(entry).lower()

    # staff of every tenant name one; each tenant's export holds its own submissions
    everywhere = hub.admin("POST", "/subjects/export", json={"email": EMAIL, "tenant": "westvale"}).json()
    assert [s["reference"] for s in everywhere["submissions"]] == [resident.westvale]
    # once retention purged a payload, its link to the resident went with it; one with a parked
    # delivery keeps both
    hub.runtime.config = dataclasses.replace(hub.runtime.config, retention=(RetentionRule(days=0),))
    scheduled(hub.runtime)
    after = hub.admin("POST", "/subjects/export", token=resident.caseworker, json={"email": EMAIL}).json()
    assert [s["reference"] for s in after["submissions"]] == [resident.tipping]


def test_subject_requests_answer_every_bad_request_with_a_problem_that_does_not_repeat_the_address(resident: Resident) -> None:
    hub = resident.hub
    cases = [
        (hub.westvale_staff_token, {"email": EMAIL}, 403, "caseworker role"),
        (resident.caseworker, {"email": EMAIL, "tenant": "westvale"}, 404, "No tenant 'westvale'"),
        (None, {"email": EMAIL}, 403, "/tenant"),
        (None, {"email": EMAIL, "tenant": "nowhere"}, 404, "No tenant 'nowhere'"),
        (resident.caseworker, {"email": f"{NAME} at home"}, 422, "/body/email"),
        (resident.caseworker, {"mail": EMAIL}, 422, "/body/email"),
        (resident.caseworker, {"email": "a@b." + "c" * 400}, 422, "/body/email"),
    ]
    for token, body, status, said in cases:
        answer = hub.admin("POST", "/subjects/export", token=token, json=body)
        assert answer.status_code == status and answer.headers["content-type"] == "application/problem+json", (body, answer.text)
        assert said in answer.text and NAME not in answer.text and EMAIL not in answer.text
    assert hub.admin("POST", "/subjects/erase", token=resident.caseworker, json={"email": EMAIL}).status_code == 403
    assert hub.admin("GET", "/audit", params={"action": "subject.export"}).json() == []


def test_an_erasure_removes_the_residents_personal_data_parks_what_is_still_open_and_is_audited_by_reference(resident: Resident) -> None:
    hub = resident.hub
    crm = hub.runtime.config.connectors["crm"]
    hub.runtime.config.connectors["crm"] = crm.model_copy(update={"retry": RetryPolicy(max_attempts=5, base_seconds=3600, cap_seconds=3600)})
    hub.crm.arm(FailurePlan(count=1000, mode="status", status=503))
    person = {"name": {"first": NAME, "last": "Ocksby"}, "email": EMAIL}
    waiting = hub.post("missed-bin-collection", sample("missed-bin-collection", "recycling-postcode", **person)).json()["reference"]
    while hub.status(waiting).json()["deliveries"][0]["state"] != "retrying":
        time.sleep(0.05)
    cases_before = len(hub.crm.cases())

    answer = hub.admin("POST", "/subjects/erase", token=resident.admin, json={"email": EMAIL})
    assert answer.status_code == 200
    body = answer.json()
    assert body["erased"] == 3 and {s["reference"] for s in body["submissions"]} == {resident.bins, resident.tipping, waiting}
    assert {s["reference"]: s["deliveries_parked"] for s in body["submissions"]}[waiting] == 1

    [delivery] = hub.status(waiting).json()["deliveries"]
    assert delivery["state"] == "parked" and delivery["last_error"] == "erased at the resident's request"
    shown = hub.admin("GET", f"/submissions/{resident.tipping}", token=resident.caseworker).json()
    assert shown["erased_at"] is not None and shown["personal_data"] == "shown"
    assert shown["payload"]["reporter"] == {} and shown["payload"]["location"] == {"uprn": "100023336956"}
    assert shown["payload"]["size"] == "small_van" and shown["payload"]["waste_types"] == ["household_bags", "furniture"]
    for reference in (resident.bins, resident.tipping, waiting):
        stored = row(hub.runtime.engine, reference)
        opened = json.dumps(hub.runtime.sealer.open(stored.payload)).lower()
        assert EMAIL not in opened and NAME.lower() not in opened and links_of(hub.runtime.engine, stored.id) == []
    assert NAME.encode() not in raw_database(hub) and EMAIL.encode() not in raw_database(hub)
    assert hub.admin("POST", "/subjects/export", token=resident.caseworker, json={"email": EMAIL}).json()["submissions"] == []

    entries = hub.admin("GET", "/audit", params={"action": "subject.erase"}).json()
    assert sorted(e["target"] for e in entries) == sorted([resident.bins, resident.tipping, waiting])
    assert all(e["actor"] == "staff:em-admin" and e["tenant"] == "eastmoor" for e in entries)
    assert EMAIL not in json.dumps(hub.admin("GET", "/audit").json()).lower()
    # the other council's copy, and the neighbour's submission, are untouched
    assert hub.admin("POST", "/subjects/export", json={"email": EMAIL, "tenant": "westvale"}).json()["submissions"][0]["payload"]["email"] == EMAIL
    assert hub.runtime.sealer.open(row(hub.runtime.engine, resident.neighbour).payload)["email"] == "sian.aprhys@example.org"
    hub.crm.arm(FailurePlan(count=0))
    assert len(hub.crm.cases()) == cases_before
    # asked again, there is nothing left to erase
    assert hub.admin("POST", "/subjects/erase", token=resident.admin, json={"email": EMAIL}).json()["erased"] == 0


def _hub(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=REPO, env=clean | ENV, capture_output=True, text=True, timeout=120, input=input)


ENV: dict[str, str] = {}


def test_ict_exports_to_a_private_file_and_erases_from_the_command_line(resident: Resident, tmp_path: Path) -> None:
    hub = resident.hub
    ENV.update({"HUB_DATABASE_URL": str(hub.runtime.engine.url), "HUB_ENCRYPTION_KEYS": KEY, "HUB_INDEX_KEY": INDEX_KEY.decode()})
    out = tmp_path / "sar.json"
    exported = _hub("subjects", "export", "--tenant", "westvale", "--email", EMAIL, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == f"1 submission(s) exported to {out}"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    assert [s["reference"] for s in document["submissions"]] == [resident.westvale]
    assert document["submissions"][0]["payload"]["email"] == EMAIL
    printed = _hub("subjects", "export", "--tenant", "eastmoor", "--email", EMAIL)
    assert len(json.loads(printed.stdout)["submissions"]) == 2 and "2 submission(s) exported" in printed.stderr

    refused = _hub("subjects", "erase", "--tenant", "eastmoor", "--email", EMAIL, "--actor", "dpo-jones", input="n\n")
    assert refused.returncode == 1 and "nothing erased" in refused.stderr
    assert _hub("subjects", "erase", "--tenant", "nowhere", "--email", EMAIL, "--actor", "x", "--yes").stderr.strip() == (
        "no tenant 'nowhere'; configured: eastmoor, westvale"
    )
    bad = _hub("subjects", "export", "--tenant", "eastmoor", "--email", NAME)
    assert bad.returncode == 1 and NAME not in bad.stderr + bad.stdout

    erased = _hub("subjects", "erase", "--tenant", "eastmoor", "--email", EMAIL, "--actor", "dpo-jones", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert resident.bins in erased.stdout and resident.tipping in erased.stdout and "2 submission(s) erased" in erased.stdout
    entries = hub.admin("GET", "/audit", params={"action": "subject.erase"}).json()
    assert {e["target"] for e in entries} == {resident.bins, resident.tipping} and {e["actor"] for e in entries} == {"dpo-jones"}
    actors = {e["actor"] for e in hub.admin("GET", "/audit", params={"action": "subject.export"}).json()}
    assert len(actors) == 1 and actors.pop().startswith("cli:")
    assert hub.runtime.sealer.open(row(hub.runtime.engine, resident.tipping).payload)["reporter"] == {}


def test_submissions_stored_before_the_index_existed_are_found_once_reindexed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from sqlalchemy import delete

    from hub.privacy.sealing import Sealer
    from hub.privacy.subjects import export, reindex
    from hub.store.db import make_engine
    from hub.store.migrate import upgrade
    from hub.store.tables import customer_links
    from tests.support.privacy import FORMS, plant

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine)
    sealer = Sealer.from_keys([KEY])
    older = [plant(engine, sealer, sample("missed-bin-collection", "general-uprn", email=EMAIL)) for _ in range(3)]
    plant(engine, Sealer.from_keys([Fernet.generate_key().decode()]), sample("missed-bin-collection", "garden-uprn"))
    plant(engine, sealer, sample("report-fly-tipping", "coordinates-anonymous"), form_id="report-fly-tipping")
    with engine.begin() as conn:
        conn.execute(delete(customer_links))
    runtime = SimpleNamespace(engine=engine, sealer=sealer, index_key=INDEX_KEY, forms=FORMS)
    assert export(runtime, "eastmoor", EMAIL, "t")["submissions"] == []  # type: ignore[arg-type]

    assert reindex(runtime, batch=2) == (5, 3, 1)  # type: ignore[arg-type]
    assert reindex(runtime, batch=2) == (5, 3, 1)  # type: ignore[arg-type]
    found = export(runtime, "eastmoor", EMAIL, "t")["submissions"]  # type: ignore[arg-type]
    assert [s["reference"] for s in found] == [p.reference for p in older]
    assert all(len(links_of(engine, p.submission_id)) == 1 for p in older)
    engine.dispose()
