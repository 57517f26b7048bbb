"""Rate limits, daily quotas and the brake on failed sign-ins as a client sees them, through the
ASGI app (an in-process replica made over the embedded hub's runtime; the clock moved with
time-machine rather than slept)."""

from __future__ import annotations

import io
import json
import time

import time_machine
from sqlalchemy import func, select
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.api.ratelimit import RateLimits
from hub.config.settings import Settings
from hub.logs import configure
from hub.store.tables import submissions
from tests.support.embedded import EmbeddedHub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
PATH = "/v1/forms/missed-bin-collection/submissions"


def replica(hub: EmbeddedHub, address: str = "10.0.0.1", **settings: object) -> TestClient:
    """One more `hub api` replica over the hub's runtime, with its own counters and settings."""
    app = create_app(hub.runtime, hub.relay, manage_relay=False)
    app.state.limits = RateLimits(hub.runtime.settings.model_copy(update=settings), hub.runtime.config)
    return TestClient(app, client=(address, 40000))


def limit_client(hub: EmbeddedHub, client_id: str, rate_limit: str) -> None:
    config = hub.runtime.config
    config.clients[client_id] = config.clients[client_id].model_copy(update={"rate_limit": rate_limit})


def limit_tenant(hub: EmbeddedHub, tenant_id: str, **update: object) -> None:
    config = hub.runtime.config
    config.tenants[tenant_id] = config.tenants[tenant_id].model_copy(update=update)


def post(api: TestClient, key: str) -> object:
    return api.post(PATH, json=SAMPLE, headers={"Authorization": f"Bearer {key}"})


def stored(hub: EmbeddedHub) -> int:
    with hub.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(submissions)).scalar_one())


def assert_429(response: object) -> dict:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["Retry-After"]) >= 1
    assert int(headers["RateLimit-Reset"]) >= 1 and headers["RateLimit-Remaining"] == "0"
    assert int(headers["RateLimit-Limit"]) >= 1
    body: dict = response.json()  # type: ignore[attr-defined]
    assert body["status"] == 429 and body["type"] == "/problems/too-many-requests" and body["detail"]
    return body


def test_a_client_over_its_limit_gets_a_429_that_stores_nothing_and_is_served_after_the_wait(hub: EmbeddedHub) -> None:
    limit_client(hub, "demo-portal", "3/minute")
    api = replica(hub)
    with time_machine.travel(time.time(), tick=True) as clock:
        assert [post(api, hub.key).status_code for _ in range(3)] == [202, 202, 202]  # type: ignore[attr-defined]
        before = stored(hub)
        refused = post(api, hub.key)
        body = assert_429(refused)
        assert refused.headers["RateLimit-Limit"] == "3"  # type: ignore[attr-defined]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60  # type: ignore[attr-defined]
        assert "3 requests per 1 minute" in body["detail"] and hub.key not in refused.text  # type: ignore[attr-defined]
        assert stored(hub) == before
        # another council's client is not slowed by it
        assert post(api, hub.westvale_key).status_code == 202  # type: ignore[attr-defined]
        clock.shift(int(refused.headers["Retry-After"]) + 1)  # type: ignore[attr-defined]
        assert post(api, hub.key).status_code == 202  # type: ignore[attr-defined]


def test_status_reads_and_the_govuk_front_door_spend_the_same_bucket(hub: EmbeddedHub) -> None:
    limit_client(hub, "demo-portal", "2/minute")
    api = replica(hub)
    reference = post(api, hub.key).json()["reference"]  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {hub.key}"}
    assert api.get(f"/v1/submissions/{reference}", headers=auth).status_code == 200
    assert_429(api.get(f"/v1/submissions/{reference}", headers=auth))
    assert_429(api.post("/v1/govuk-forms/submissions", json={}, headers=auth))


def test_the_open311_front_door_is_limited_too(hub: EmbeddedHub) -> None:
    limit_client(hub, "demo-portal", "1/minute")
    api = replica(hub)
    assert post(api, hub.key).status_code == 202  # type: ignore[attr-defined]
    assert_429(api.post("/open311/v2/requests.json", data={"api_key": hub.key, "service_code": "missed-bin-collection"}))


def test_a_tenant_limit_covers_all_its_clients_and_no_other_tenant(hub: EmbeddedHub) -> None:
    limit_tenant(hub, "eastmoor", rate_limit="2/minute")
    api = replica(hub)
    assert [post(api, hub.key).status_code for _ in range(2)] == [202, 202]  # type: ignore[attr-defined]
    body = assert_429(post(api, hub.key))
    assert "council's clients together" in body["detail"]
    assert post(api, hub.westvale_key).status_code == 202  # type: ignore[attr-defined]


def test_a_spent_daily_quota_refuses_until_the_next_day_and_shows_in_the_admin_view(hub: EmbeddedHub) -> None:
    limit_tenant(hub, "eastmoor", daily_quota=2)
    api = replica(hub)
    staff = {"Authorization": f"Bearer {hub.staff_token}"}
    with time_machine.travel(time.time(), tick=True) as clock:
        assert [post(api, hub.key).status_code for _ in range(2)] == [202, 202]  # type: ignore[attr-defined]
        before = stored(hub)
        body = assert_429(post(api, hub.key))
        assert "daily quota" in body["detail"] and stored(hub) == before
        quotas = {q["tenant"]: q for q in api.get("/v1/admin/quotas", headers=staff).json()}
        assert quotas["eastmoor"]["daily_quota"] == 2 and quotas["eastmoor"]["used"] == 2
        assert quotas["eastmoor"]["remaining"] == 0 and quotas["eastmoor"]["resets_at"]
        assert quotas["westvale"]["daily_quota"] is None
        assert post(api, hub.westvale_key).status_code == 202  # type: ignore[attr-defined]
        clock.shift(24 * 3600 + 1)
        assert post(api, hub.key).status_code == 202  # type: ignore[attr-defined]


def test_the_admin_quota_view_shows_a_tenant_s_staff_only_their_own(hub: EmbeddedHub) -> None:
    api = replica(hub)
    shown = api.get("/v1/admin/quotas", headers={"Authorization": f"Bearer {hub.westvale_staff_token}"}).json()
    assert [q["tenant"] for q in shown] == ["westvale"]


def test_failed_keys_from_one_address_are_braked_with_a_growing_wait_and_never_logged(hub: EmbeddedHub) -> None:
    logs = io.StringIO()
    configure("debug", json=True, stream=logs)
    api = replica(hub, auth_failure_limit="3/minute")
    wrong = "cch_wrong-" + "x" * 20
    with time_machine.travel(time.time(), tick=True) as clock:
        assert [post(api, wrong).status_code for _ in range(3)] == [401, 401, 401]  # type: ignore[attr-defined]
        first = assert_429(post(api, wrong))
        assert "failed API keys" in first["detail"]
        waits = []
        for _ in range(3):
            refused = post(api, wrong)
            assert_429(refused)
            waits.append(int(refused.headers["Retry-After"]))  # type: ignore[attr-defined]
        assert waits[0] < waits[1] < waits[2]
        # even a good key waits at this address; another address is served
        good = post(api, hub.key)
        assert_429(good)
        other = TestClient(api.app, client=("10.0.0.2", 40000))
        assert post(other, hub.key).status_code == 202  # type: ignore[attr-defined]
        clock.shift(int(good.headers["Retry-After"]) + 1)  # type: ignore[attr-defined]
        assert post(api, hub.key).status_code == 202  # type: ignore[attr-defined]
    text = logs.getvalue()
    assert wrong not in text
    assert "auth.blocked" in text  # the brake is logged, by address


def test_staff_tokens_are_braked_on_admin_routes_too(hub: EmbeddedHub) -> None:
    api = replica(hub, auth_failure_limit="2/minute")
    bad = {"Authorization": "Bearer not-a-staff-token"}
    assert [api.get("/v1/admin/quotas", headers=bad).status_code for _ in range(2)] == [401, 401]
    assert_429(api.get("/v1/admin/quotas", headers=bad))


def test_each_replica_counts_on_its_own_so_limits_add_up_across_replicas(hub: EmbeddedHub) -> None:
    limit_client(hub, "demo-portal", "2/minute")
    first, second = replica(hub), replica(hub)
    served = [post(api, hub.key).status_code for api in (first, second) for _ in range(3)]  # type: ignore[attr-defined]
    assert served == [202, 202, 429, 202, 202, 429]
