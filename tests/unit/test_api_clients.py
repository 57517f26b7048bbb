"""Front-end clients kept in the database: made by an admin (API) or ICT (`hub clients`), their
key shown once and stored only as a hash, limited to the forms they and their tenant allow,
refused once expired or revoked; every creation and revocation is audited."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, update

from hub.config.settings import Settings
from hub.store import clients
from hub.store.tables import api_clients
from tests.support.embedded import EmbeddedHub
from tests.support.staff import staffed_hub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


@pytest.fixture()
def staffed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedHub, dict[str, str]]]:
    # a short cache, so a key revoked by another process is seen to stop working quickly
    monkeypatch.setenv("HUB_CLIENT_CACHE_SECONDS", "0.3")
    with staffed_hub(tmp_path) as running:
        yield running


def create(hub: EmbeddedHub, token: str, **body: object) -> dict:
    answer = hub.admin("POST", "/clients", token=token, json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_an_admin_makes_a_client_whose_key_is_shown_once_and_stored_only_as_a_hash(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    made = create(hub, tokens["westvale-admin"], id="wv-kiosk", name="Library kiosk", forms=["missed-bin-collection"], expires_in_days=30)
    key = made["api_key"]
    assert key.startswith("cch_") and len(key) >= 40 and made["key_prefix"] == key[:8]
    assert made["tenant"] == "westvale" and made["state"] == "active" and made["created_by"] == "staff:westvale-admin"
    assert datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC) > timedelta(days=29)
    with hub.runtime.engine.connect() as conn:
        row = conn.execute(select(api_clients).where(api_clients.c.id == "wv-kiosk")).one()
    assert row.key_sha256 == hashlib.sha256(key.encode()).hexdigest() and key not in str(tuple(row))
    listed = hub.admin("GET", "/clients", token=tokens["westvale-admin"])
    assert key not in listed.text
    [kiosk] = [c for c in listed.json() if c["id"] == "wv-kiosk"]
    assert kiosk["key_prefix"] == key[:8] and kiosk["state"] == "active" and "api_key" not in kiosk
    # the front end uses its key at once, for its own form only
    accepted = hub.post("missed-bin-collection", SAMPLE, key=key)
    assert accepted.status_code == 202 and accepted.json()["reference"].startswith("WBC-")
    assert hub.status(accepted.json()["reference"], key=key).status_code == 200
    assert hub.post("report-fly-tipping", {}, key=key).status_code == 404


def test_a_client_submits_only_forms_its_tenant_offers_and_cannot_be_made_for_others(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    westvale = hub.runtime.config.tenants["westvale"]
    hub.runtime.config.tenants["westvale"] = westvale.model_copy(update={"forms": ("missed-bin-collection",)})
    refused = hub.admin("POST", "/clients", token=tokens["westvale-admin"], json={"id": "wv-web", "forms": ["missed-bin-collection", "report-fly-tipping", "no-such-form"]})
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"pointer": "/forms/1", "detail": "tenant 'westvale' does not offer form 'report-fly-tipping'"},
        {"pointer": "/forms/2", "detail": "the hub has no form 'no-such-form'"},
    ]
    key = create(hub, tokens["westvale-admin"], id="wv-web", forms=["*"])["api_key"]
    assert hub.post("missed-bin-collection", SAMPLE, key=key).status_code == 202
    closed = hub.post("report-fly-tipping", {"anything": 1}, key=key)
    assert closed.status_code == 404 and closed.json()["detail"] == "There is no form 'report-fly-tipping' for this client."


def test_ids_are_unique_across_configured_and_stored_clients(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    taken = hub.admin("POST", "/clients", token=tokens["westvale-admin"], json={"id": "westvale-portal"})
    assert taken.status_code == 422 and taken.json()["errors"][0]["pointer"] == "/id"
    assert "defined in the configuration files" in taken.json()["errors"][0]["detail"]
    create(hub, tokens["westvale-admin"], id="wv-app")
    again = hub.admin("POST", "/clients", token=tokens["westvale-admin"], json={"id": "wv-app"})
    assert again.status_code == 422 and "already exists" in again.json()["errors"][0]["detail"]
    config_revoke = hub.admin("POST", "/clients/westvale-portal/revoke", token=tokens["westvale-admin"])
    assert config_revoke.status_code == 400 and "configuration files" in config_revoke.json()["detail"]


def test_a_revoked_key_is_refused_at_once_here_and_within_the_cache_time_elsewhere(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    first = create(hub, tokens["westvale-admin"], id="wv-one")["api_key"]
    second = create(hub, tokens["westvale-admin"], id="wv-two")["api_key"]
    for key in (first, second):
        assert hub.post("missed-bin-collection", SAMPLE, key=key).status_code == 202
    revoked = hub.admin("POST", "/clients/wv-one/revoke", token=tokens["westvale-admin"])
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked" and revoked.json()["revoked_by"] == "staff:westvale-admin"
    refused = hub.post("missed-bin-collection", SAMPLE, key=first)
    assert refused.status_code == 401 and "was revoked on" in refused.json()["detail"] and first not in refused.text
    assert refused.headers["www-authenticate"].startswith("Bearer")
    # revoked by another process (`hub clients revoke`): this API notices within client_cache_seconds
    clients.revoke(hub.runtime.engine, "wv-two", "cli:alice")
    time.sleep(0.5)
    assert hub.post("missed-bin-collection", SAMPLE, key=second).status_code == 401
    # revoking twice changes nothing and is audited once
    assert hub.admin("POST", "/clients/wv-one/revoke", token=tokens["westvale-admin"]).status_code == 200
    revocations = hub.admin("GET", "/audit", token=tokens["westvale-admin"], params={"action": "client.revoke"}).json()
    assert [(e["target"], e["actor"]) for e in revocations] == [("client:wv-one", "staff:westvale-admin"), ("client:wv-two", "cli:alice")]


def test_an_expired_key_is_refused_saying_so(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    key = create(hub, tokens["westvale-admin"], id="wv-trial", expires_in_days=1)["api_key"]
    with hub.runtime.engine.begin() as conn:  # a day and a bit passes
        conn.execute(update(api_clients).where(api_clients.c.id == "wv-trial").values(expires_at=datetime.now(UTC) - timedelta(hours=1)))
    refused = hub.post("missed-bin-collection", SAMPLE, key=key)
    assert refused.status_code == 401 and "expired on" in refused.json()["detail"] and key not in refused.text
    [trial] = [c for c in hub.admin("GET", "/clients", token=tokens["westvale-admin"]).json() if c["id"] == "wv-trial"]
    assert trial["state"] == "expired"


def test_a_tenant_admin_sees_and_manages_only_their_tenants_clients_and_others_need_the_admin_role(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    stored, _ = clients.create(hub.runtime.engine, clients.NewClient("em-kiosk", "eastmoor"), "cli:ict")
    assert stored.tenant == "eastmoor"
    admin = tokens["westvale-admin"]
    listed = hub.admin("GET", "/clients", token=admin).json()
    assert {c["tenant"] for c in listed} == {"westvale"} and "em-kiosk" not in str(listed) and "demo-portal" not in str(listed)
    assert hub.admin("POST", "/clients/em-kiosk/revoke", token=admin).status_code == 404
    assert hub.admin("POST", "/clients/demo-portal/revoke", token=admin).status_code == 404
    assert hub.admin("POST", "/clients", token=admin, json={"id": "em-new", "tenant": "eastmoor"}).status_code == 404
    assert clients.get(hub.runtime.engine, "em-kiosk").state() == "active"  # type: ignore[union-attr]
    for role in ("westvale-viewer", "westvale-caseworker"):
        denied = hub.admin("GET", "/clients", token=tokens[role])
        assert denied.status_code == 403 and "admin role" in denied.json()["detail"]
    operator = hub.admin("POST", "/clients", token=tokens["ict-operator"], json={"id": "x-1", "tenant": "eastmoor"})
    assert operator.status_code == 403


def test_each_creation_and_revocation_is_audited_with_actor_tenant_time_and_target_but_never_the_key(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    key = create(hub, tokens["westvale-admin"], id="wv-audited", forms=["missed-bin-collection"])["api_key"]
    hub.admin("POST", "/clients/wv-audited/revoke", token=tokens["westvale-admin"])
    trail = hub.admin("GET", "/audit", token=tokens["westvale-admin"]).json()
    made, gone = [e for e in trail if e["action"] in ("client.create", "client.revoke")]
    assert (made["action"], made["actor"], made["tenant"], made["target"]) == ("client.create", "staff:westvale-admin", "westvale", "client:wv-audited")
    assert (gone["action"], gone["actor"], gone["tenant"], gone["target"]) == ("client.revoke", "staff:westvale-admin", "westvale", "client:wv-audited")
    assert made["detail"]["forms"] == ["missed-bin-collection"] and made["detail"]["key_prefix"] == key[:8]
    assert datetime.fromisoformat(made["at"]) <= datetime.fromisoformat(gone["at"]) <= datetime.now(UTC)
    assert key not in json.dumps(trail) and key[8:] not in json.dumps(trail)


def test_a_stored_key_works_at_the_open311_door_until_it_is_revoked(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, _ = staffed
    made, key = clients.create(
        hub.runtime.engine, clients.NewClient(id="em-fms", tenant="eastmoor", name="FixMyStreet", forms=("report-fly-tipping",)), "test"
    )
    fields = [
        ("api_key", key), ("service_code", "fly-tipping"), ("lat", "54.6536"), ("long", "-5.6689"),
        ("description", "Four tyres dumped overnight"), ("attribute[waste_type][]", "tyres"), ("attribute[size]", "car_boot"),
    ]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    created = hub.client.post("/open311/v2/requests.json", content=urlencode(fields), headers=form)
    assert created.status_code == 200, created.text
    reference = created.json()[0]["service_request_id"]
    assert reference.startswith("EDC-")
    assert hub.client.get(f"/open311/v2/requests/{reference}.json", params={"api_key": key}).status_code == 200
    clients.revoke(hub.runtime.engine, made.id, "test")
    time.sleep(0.4)  # the cache is 0.3 s old at most here
    refused = hub.client.post("/open311/v2/requests.json", content=urlencode(fields), headers=form)
    assert refused.status_code == 403 and "revoked" in refused.json()[0]["description"] and key not in refused.text


def test_an_admin_rotates_a_key_and_the_old_one_works_until_its_grace_period_ends(staffed: tuple[EmbeddedHub, dict[str, str]]) -> None:
    hub, tokens = staffed
    old = create(hub, tokens["westvale-admin"], id="wv-kiosk")["api_key"]
    assert hub.admin("POST", "/clients/wv-kiosk/rotate", token=tokens["westvale-viewer"]).status_code == 403
    assert hub.admin("POST", "/clients/wv-kiosk/rotate", token=tokens["westvale-admin"], json={"grace_hours": 721}).status_code == 422
    rotated = hub.admin("POST", "/clients/wv-kiosk/rotate", token=tokens["westvale-admin"], json={"grace_hours": 0})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    key = rotated.json()["api_key"]
    assert key != old and rotated.json()["key_prefix"] == key[:8] and rotated.json()["previous_key_prefix"] is None
    assert hub.post("missed-bin-collection", SAMPLE, key=key).status_code == 202
    refused = hub.post("missed-bin-collection", SAMPLE, key=old)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    again = hub.admin("POST", "/clients/wv-kiosk/rotate", token=tokens["westvale-admin"])
    assert again.json()["previous_key_prefix"] == key[:8]
    assert hub.post("missed-bin-collection", SAMPLE, key=key).status_code == 202
    assert hub.admin("POST", "/clients/wv-kiosk/rotate", token=tokens["eastmoor-operator"]).status_code == 403
    [first, second] = [e for e in clients.audit.entries(hub.runtime.engine) if e["action"] == "client.rotate"]
    assert first["actor"] == second["actor"] == "staff:westvale-admin" and key not in str(first) + str(second)
