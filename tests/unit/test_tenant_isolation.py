"""The isolation matrix: every route of the hub, called with tenant B's (westvale's) credentials
for tenant A's (eastmoor's) objects, answers 404, or shows nothing of A; /metrics carries no value
of A's data (references, client ids, tenant). Connector and form names are configuration: they
label metrics for the hub's operator, so /metrics is served to the operator only (docs/security.md).

A route missing from MATRIX fails the test: classify each new route with one line, saying who
calls it, how to reach A's object, and what B must get (NOT_FOUND, or OWN: B's own answer only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from hub.api.app import create_app
from hub.attachments.storage import FileStore
from hub.auth import sessions
from hub.auth.sessions import session_secret
from hub.config.files import ConnectorConfig, StatusUpdates
from hub.config.settings import Settings
from hub.console import web as console_web
from hub.store import circuits, clients
from hub.store.replay import ParkedFilter, find_parked
from hub.store.tables import status_events, submissions
from simulators.crm import FailurePlan
from tests.support.embedded import EmbeddedHub
from tests.support.staff import staffed_hub
from tests.unit.test_attachments import jpeg_with_gps
from tests.unit.test_govuk_forms import submission as govuk_submission
from tests.unit.test_open311_endpoint import FMS_REPORT

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
# who calls: a front end with B's API key (stored in the database), a GeoReport client with B's
# configured key, a member of B's staff (an admin: every role, scoped to B), or anyone at all
CLIENT, OPEN311, STAFF, PUBLIC, BACK_OFFICE = "client", "open311", "staff", "public", "back office"
# the same member of B's staff in the console: a session cookie, and the session's CSRF token in every form
CONSOLE = "console"
# what B must get: 404, or an answer of its own (any status below 500) holding nothing of A
NOT_FOUND, OWN = "404", "own"
A_ONLY_CONNECTOR = "eastmoor-highways"
B_ONLY_CONNECTOR = "westvale-repairs"
B_STATUS_SECRET = "westvale-repairs-status-" + "5e0c2a"
# the resident of A's sample submissions (B's staff ask for their data too)
RESIDENT = SAMPLE["email"]


@dataclass
class World:
    """Tenant A's objects, and tenant B's credentials."""

    reference: str = ""
    parked_reference: str = ""
    parked_delivery_id: int = 0
    idempotency_key: str = "eastmoor-portal-0001"
    govuk_reference: str = "EMGOVUK1"
    client_id: str = "em-isolation-kiosk"
    connector: str = A_ONLY_CONNECTOR
    webhook_id: str = ""
    attachment_id: str = ""
    references: set[str] = field(default_factory=set)
    # B's credentials
    b_key: str = ""
    b_open311_key: str = ""
    b_staff: str = ""
    # what must never reach B: A's references, tenant id, client ids, A-only connector
    markers: set[str] = field(default_factory=set)
    # what no metric may carry: A's data, as opposed to the hub's configuration
    metric_markers: set[str] = field(default_factory=set)


class Row(NamedTuple):
    method: str
    path: str
    caller: str
    # path parameters and request parts (json, params, headers, content) reaching A's object
    target: Callable[[World], dict[str, Any]]
    expect: str


def nothing(_: World) -> dict[str, Any]:
    return {}


def signed_update(a: World) -> dict[str, Any]:
    body = json.dumps({"reference": a.reference, "status": "closed"}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(B_STATUS_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"content": body, "headers": {"Hub-Signature": f"t={stamp},v1={digest}", "Content-Type": "application/json"}}


MATRIX: list[Row] = [
    # front ends
    Row("POST", "/v1/forms/{form_id}/submissions", CLIENT, lambda a: {"form_id": "missed-bin-collection", "json": SAMPLE, "headers": {"Idempotency-Key": a.idempotency_key}}, OWN),
    Row("GET", "/v1/submissions/{reference}", CLIENT, lambda a: {"reference": a.reference}, NOT_FOUND),
    Row("POST", "/v1/govuk-forms/submissions", CLIENT, lambda a: {"json": govuk_submission(a.govuk_reference)}, OWN),
    Row("POST", "/open311/v2/requests.json", OPEN311, lambda a: {"content": urlencode([("api_key", a.b_open311_key), *FMS_REPORT]), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, OWN),
    Row("GET", "/open311/v2/requests/{reference}.json", OPEN311, lambda a: {"reference": a.reference, "params": {"api_key": a.b_open311_key}}, NOT_FOUND),
    Row("GET", "/v1/residents/{subject}/prefill", CLIENT, lambda a: {"subject": "eastmoor-resident-1", "params": {"form": "missed-bin-collection"}}, NOT_FOUND),
    Row("GET", "/v1/residents/{subject}/submissions", CLIENT, lambda a: {"subject": "eastmoor-resident-1"}, NOT_FOUND),
    Row("POST", "/v1/attachments", CLIENT, lambda a: {"content": jpeg_with_gps(), "headers": {"X-Filename": "westvale-photo.jpg"}}, OWN),
    Row("POST", "/v1/submissions/{reference}/rating", CLIENT, lambda a: {"reference": a.reference, "json": {"score": 5}}, NOT_FOUND),
    Row("GET", "/v1/admin/ratings", STAFF, nothing, OWN),
    Row("GET", "/v1/attachments/{attachment_id}", CLIENT, lambda a: {"attachment_id": a.attachment_id}, NOT_FOUND),
    # the resident's browser back from GOV.UK Pay: only the unguessable token finds a payment
    Row("GET", "/v1/payments/return/{token}", PUBLIC, lambda a: {"token": f"guessed-{a.reference}"}, NOT_FOUND),
    # a back office with a link the hub signed; without A's signature anyone gets a 403, never the bytes
    Row("GET", "/v1/attachments/{attachment_id}/content", PUBLIC,
        lambda a: {"attachment_id": a.attachment_id, "params": {"expires": str(int(time.time()) + 600), "signature": "0" * 64}}, OWN),
    Row("GET", "/open311/v2/services.json", PUBLIC, nothing, OWN),
    Row("GET", "/open311/v2/services/{code}.json", PUBLIC, lambda a: {"code": "fly-tipping"}, OWN),
    # staff
    Row("GET", "/v1/webhooks", CLIENT, nothing, OWN),
    Row("POST", "/v1/webhooks", CLIENT, lambda a: {"json": {"url": "http://127.0.0.1:9/westvale-hook"}}, OWN),
    Row("DELETE", "/v1/webhooks/{webhook_id}", CLIENT, lambda a: {"webhook_id": a.webhook_id}, NOT_FOUND),
    Row("POST", "/v1/webhooks/{webhook_id}/rotate-secret", CLIENT, lambda a: {"webhook_id": a.webhook_id}, NOT_FOUND),
    Row("DELETE", "/v1/webhooks/{webhook_id}/previous-secret", CLIENT, lambda a: {"webhook_id": a.webhook_id}, NOT_FOUND),
    *(Row(method, "/v1/webhooks", CLIENT, nothing, OWN) for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")),
    # back offices: B's own back office, signing correctly, pushes a status for A's record
    Row("POST", "/v1/status-updates/{connector}", BACK_OFFICE, lambda a: {"connector": B_ONLY_CONNECTOR, **signed_update(a)}, NOT_FOUND),
    # staff
    Row("GET", "/v1/admin/submissions/{reference}", STAFF, lambda a: {"reference": a.reference}, NOT_FOUND),
    Row("POST", "/v1/admin/subjects/export", STAFF, lambda a: {"json": {"email": RESIDENT}}, OWN),
    Row("POST", "/v1/admin/subjects/export", STAFF, lambda a: {"json": {"email": RESIDENT, "tenant": "eastmoor"}}, NOT_FOUND),
    Row("POST", "/v1/admin/subjects/erase", STAFF, lambda a: {"json": {"email": RESIDENT}}, OWN),
    Row("GET", "/v1/admin/connectors", STAFF, nothing, OWN),
    Row("GET", "/v1/admin/quotas", STAFF, nothing, OWN),
    Row("POST", "/v1/admin/residents/erase", STAFF, lambda a: {"json": {"subject": "eastmoor-resident-1", "tenant": "eastmoor"}}, NOT_FOUND),
    Row("POST", "/v1/admin/connectors/{name}/pause", STAFF, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("POST", "/v1/admin/connectors/{name}/resume", STAFF, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("GET", "/v1/admin/deliveries", STAFF, nothing, OWN),
    Row("POST", "/v1/admin/deliveries/{delivery_id}/replay", STAFF, lambda a: {"delivery_id": a.parked_delivery_id}, NOT_FOUND),
    Row("POST", "/v1/admin/deliveries/replay", STAFF, lambda a: {"json": {"connector": "crm"}}, OWN),
    Row("POST", "/v1/admin/deliveries/{delivery_id}/corrections", STAFF, lambda a: {"delivery_id": a.parked_delivery_id, "json": {"answers": {**SAMPLE, "notes": "by B"}, "reason": "B tries"}}, NOT_FOUND),
    Row("GET", "/v1/admin/audit", STAFF, nothing, OWN),
    Row("GET", "/v1/admin/savings", STAFF, nothing, OWN),
    Row("GET", "/v1/admin/clients", STAFF, nothing, OWN),
    Row("POST", "/v1/admin/clients", STAFF, lambda a: {"json": {"id": "b-made-for-a", "tenant": "eastmoor"}}, NOT_FOUND),
    Row("POST", "/v1/admin/clients/{client_id}/revoke", STAFF, lambda a: {"client_id": a.client_id}, NOT_FOUND),
    Row("POST", "/v1/admin/clients/{client_id}/rotate", STAFF, lambda a: {"client_id": a.client_id}, NOT_FOUND),
    *(Row(method, "/v1/admin/clients", STAFF, nothing, OWN) for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")),
    # sign-in (local tokens only in this hub: nothing to reach)
    Row("GET", "/v1/auth/login", PUBLIC, nothing, OWN),
    Row("GET", "/v1/auth/callback", PUBLIC, lambda a: {"params": {"code": "x", "state": "y"}}, OWN),
    # operations and documents
    Row("GET", "/healthz", PUBLIC, nothing, OWN),
    Row("GET", "/readyz", PUBLIC, nothing, OWN),
    Row("GET", "/metrics", PUBLIC, nothing, OWN),
    Row("GET", "/problems/{kind}", PUBLIC, lambda a: {"kind": "not-found"}, OWN),
    Row("GET", "/console/static", PUBLIC, nothing, OWN),
    # the staff console (B's admin signed in; forms carry B's valid CSRF token)
    Row("GET", "/console", CONSOLE, nothing, OWN),
    Row("GET", "/console/submissions", CONSOLE, lambda a: {"params": {"reference": a.reference}}, OWN),
    Row("GET", "/console/submissions/{reference}", CONSOLE, lambda a: {"reference": a.reference}, NOT_FOUND),
    Row("POST", "/console/submissions/{reference}/reveal", CONSOLE, lambda a: {"reference": a.reference}, NOT_FOUND),
    Row("GET", "/console/deliveries", CONSOLE, nothing, OWN),
    Row("GET", "/console/savings", CONSOLE, nothing, OWN),
    Row("GET", "/console/savings.csv", CONSOLE, nothing, OWN),
    Row("POST", "/console/deliveries/{delivery_id}/replay", CONSOLE, lambda a: {"delivery_id": a.parked_delivery_id}, NOT_FOUND),
    Row("POST", "/console/deliveries/replay", CONSOLE, lambda a: {"form": {f"delivery-{a.parked_delivery_id}": "yes", "action": "replay"}}, OWN),
    Row("GET", "/console/deliveries/{delivery_id}/edit", CONSOLE, lambda a: {"delivery_id": a.parked_delivery_id}, NOT_FOUND),
    Row("POST", "/console/deliveries/{delivery_id}/edit", CONSOLE, lambda a: {"delivery_id": a.parked_delivery_id, "form": {"answer:/notes": "by B", "reason": "B tries"}}, NOT_FOUND),
    Row("POST", "/console/deliveries/{delivery_id}/corrections", CONSOLE, lambda a: {"delivery_id": a.parked_delivery_id, "form": {"answers": json.dumps({**SAMPLE, "notes": "by B"}), "reason": "B tries"}}, NOT_FOUND),
    Row("GET", "/console/connectors", CONSOLE, nothing, OWN),
    Row("GET", "/console/connectors/{name}", CONSOLE, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("POST", "/console/connectors/{name}/pause", CONSOLE, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("POST", "/console/connectors/{name}/resume", CONSOLE, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("POST", "/console/connectors/{name}/check", CONSOLE, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("POST", "/console/connectors/{name}/preview", CONSOLE, lambda a: {"name": a.connector}, NOT_FOUND),
    Row("GET", "/console/clients", CONSOLE, nothing, OWN),
    Row("POST", "/console/clients", CONSOLE, nothing, OWN),
    Row("POST", "/console/clients/{client_id}/rotate", CONSOLE, lambda a: {"client_id": a.client_id}, NOT_FOUND),
    Row("POST", "/console/clients/{client_id}/revoke", CONSOLE, lambda a: {"client_id": a.client_id}, NOT_FOUND),
    Row("POST", "/console/clients/{client_id}/revoke-previous", CONSOLE, lambda a: {"client_id": a.client_id}, NOT_FOUND),
    Row("GET", "/console/webhooks", CONSOLE, nothing, OWN),
    Row("POST", "/console/webhooks", CONSOLE, nothing, OWN),
    Row("POST", "/console/webhooks/{webhook_id}/disable", CONSOLE, lambda a: {"webhook_id": a.webhook_id}, NOT_FOUND),
    Row("POST", "/console/webhooks/{webhook_id}/delete", CONSOLE, lambda a: {"webhook_id": a.webhook_id}, NOT_FOUND),
    Row("GET", "/console/audit", CONSOLE, lambda a: {"params": {"reference": a.reference}}, OWN),
    Row("GET", "/console/audit.csv", CONSOLE, nothing, OWN),
    Row("POST", "/console/sign-out", CONSOLE, nothing, OWN),
    Row("GET", "/console/sign-in", PUBLIC, nothing, OWN),
    Row("GET", "/console/callback", PUBLIC, lambda a: {"params": {"code": "x", "state": "y"}}, OWN),
    Row("GET", "/openapi.json", PUBLIC, nothing, OWN),
    Row("GET", "/docs", PUBLIC, nothing, OWN),
    Row("GET", "/docs/oauth2-redirect", PUBLIC, nothing, OWN),
    Row("GET", "/redoc", PUBLIC, nothing, OWN),
]


def every_route(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x includes routers lazily
        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    return {(method, route.path) for route in routes for method in (route.methods or {"GET"}) if method != "HEAD"}


def test_every_route_of_the_hub_is_in_the_isolation_matrix(world: tuple[EmbeddedHub, World]) -> None:
    app = create_app(world[0].runtime)
    listed = {(row.method, row.path) for row in MATRIX}
    routes = every_route(app)
    assert sorted(routes - listed) == [], "routes not classified in MATRIX: add a row for each"
    assert sorted(listed - routes) == [], "MATRIX rows for routes that no longer exist"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedHub, World]]:
    # one world for every row: each row also checks that A's objects are as they were
    with staffed_hub(tmp_path_factory.mktemp("world")) as (hub, tokens):
        hub.app.state.attachment_store = FileStore(tmp_path_factory.mktemp("attachments"), hub.runtime.sealer.fernet)
        yield hub, build_world(hub, tokens)


def build_world(hub: EmbeddedHub, tokens: dict[str, str]) -> World:
    a = World()
    hub.runtime.config.connectors[A_ONLY_CONNECTOR] = ConnectorConfig(name=A_ONLY_CONNECTOR, type="rest", tenants=("eastmoor",), options={"url": "http://127.0.0.1:9/"})
    hub.runtime.config.connectors[B_ONLY_CONNECTOR] = ConnectorConfig(
        name=B_ONLY_CONNECTOR, type="rest", tenants=("westvale",), options={"url": "http://127.0.0.1:9/"},
        status_updates=StatusUpdates(secret_env="WESTVALE_REPAIRS_STATUS_SECRET"),
    )
    hub.runtime.secrets._environ["WESTVALE_REPAIRS_STATUS_SECRET"] = B_STATUS_SECRET
    first = hub.post("missed-bin-collection", SAMPLE, headers={"Idempotency-Key": a.idempotency_key})
    a.reference = first.json()["reference"]
    hub.wait_until_settled(a.reference)
    hub.crm.arm(FailurePlan(count=100, mode="status", status=502))
    a.parked_reference = hub.post("missed-bin-collection", SAMPLE).json()["reference"]
    hub.wait_until_settled(a.parked_reference)
    hub.crm.arm(FailurePlan(count=0))
    [parked] = hub.admin("GET", "/deliveries").json()
    a.parked_delivery_id = parked["delivery_id"]
    govuk = hub.client.post("/v1/govuk-forms/submissions", json=govuk_submission(a.govuk_reference), headers={"Authorization": f"Bearer {hub.key}"})
    assert govuk.status_code == 202, govuk.text
    clients.create(hub.runtime.engine, clients.NewClient(a.client_id, "eastmoor"), "cli:eastmoor-ict")
    hook = hub.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/eastmoor-hook"}, headers={"Authorization": f"Bearer {hub.key}"})
    assert hook.status_code == 201, hook.text
    a.webhook_id = hook.json()["id"]
    attachment = hub.client.post("/v1/attachments", content=jpeg_with_gps(), headers={"Authorization": f"Bearer {hub.key}", "X-Filename": "eastmoor-photo.jpg"})
    assert attachment.status_code == 201, attachment.text
    a.attachment_id = attachment.json()["id"]
    # an audit entry of A's own, and A's connector paused by A's operator
    assert hub.admin("POST", f"/connectors/{A_ONLY_CONNECTOR}/pause", token=tokens["eastmoor-operator"]).status_code == 200
    _, a.b_key = clients.create(hub.runtime.engine, clients.NewClient("wv-isolation-app", "westvale"), "cli:westvale-ict")
    a.b_open311_key, a.b_staff = hub.westvale_key, tokens["westvale-admin"]
    a.references = {a.reference, a.parked_reference, govuk.json()["reference"]}
    references = a.references | {"EDC-"}
    a.markers = references | {"eastmoor", a.client_id, "demo-portal", A_ONLY_CONNECTOR, a.webhook_id, "eastmoor-hook", a.attachment_id, "eastmoor-photo"}
    a.metric_markers = references | {'"eastmoor"', a.client_id, "demo-portal"}
    return a


def call(hub: EmbeddedHub, a: World, row: Row) -> httpx.Response:
    target = dict(row.target(a))
    path = row.path.format(**{k: target.pop(k) for k in list(target) if "{" + k + "}" in row.path})
    headers = dict(target.pop("headers", {}))
    if row.caller == CLIENT:
        headers["Authorization"] = f"Bearer {a.b_key}"
    elif row.caller == STAFF:
        headers["Authorization"] = f"Bearer {a.b_staff}"
    elif row.caller == CONSOLE:
        secret, settings = session_secret(hub.runtime.settings), hub.runtime.settings
        session = sessions.issue_console("westvale-admin", secret, settings.console_idle_minutes * 60, settings.console_absolute_hours * 3600)
        headers["Cookie"] = f"{console_web.COOKIE}={session.token}"
        if row.method == "POST":
            # a console form's own fields (B's bulk replay naming A's delivery, B's correction of it), and the token
            fields = {**target.pop("form", {}), "csrf_token": sessions.console_csrf(secret, session.sid)}
            target["content"] = urlencode(fields)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    return hub.client.request(row.method, path, headers=headers, **target)


def leaks(text: str, a: World, sent: str = "", metrics: bool = False) -> list[str]:
    """A's markers in an answer; one B sent itself (a reference it guessed) may be echoed back."""
    return sorted(marker for marker in (a.metric_markers if metrics else a.markers) if marker in text and marker not in sent)


@pytest.mark.parametrize("row", MATRIX, ids=lambda row: f"{row.method} {row.path}")
def test_tenant_b_reaches_nothing_of_tenant_a(world: tuple[EmbeddedHub, World], row: Row) -> None:
    hub, a = world
    answer = call(hub, a, row)
    sent = f"{answer.request.url} {answer.request.content.decode(errors='replace')}"
    if row.expect == NOT_FOUND:
        assert answer.status_code == 404, f"{row.method} {row.path}: {answer.status_code} {answer.text[:300]}"
    else:
        assert answer.status_code < 500, answer.text
    found = leaks(answer.text, a, sent, metrics=row.path == "/metrics")
    assert found == [], f"{row.method} {row.path} shows tenant A's {found}"
    assert leaks(" ".join(f"{k}: {v}" for k, v in answer.headers.items()), a, sent) == []
    # and A's objects are as they were (a failure here also fails the rows after it: look at the first)
    # read from the store, not the admin API: the operator's own calls would spend its rate limit
    parked = [d["reference"] for d in find_parked(hub.runtime.engine, ParkedFilter(ids=(a.parked_delivery_id,)))]
    assert parked == [a.parked_reference], f"after {row.method} {row.path}, A's parked delivery is no longer parked"
    assert clients.get(hub.runtime.engine, a.client_id).state() == "active", f"after {row.method} {row.path}, A's client is not active"  # type: ignore[union-attr]
    assert circuits.read(hub.runtime.engine, A_ONLY_CONNECTOR).paused_at is not None, f"after {row.method} {row.path}, A's connector is no longer paused"
    hooks = hub.client.get("/v1/webhooks", headers={"Authorization": f"Bearer {hub.key}"}).json()["webhooks"]
    assert [h["id"] for h in hooks] == [a.webhook_id], f"after {row.method} {row.path}, A's webhook is gone or another appeared"
    with hub.runtime.engine.connect() as conn:
        untouched = conn.execute(
            select(func.count()).select_from(submissions).where(submissions.c.tenant == "eastmoor", submissions.c.erased_at.is_(None))
        ).scalar_one()
        changed = conn.execute(select(func.count()).select_from(status_events).where(status_events.c.tenant == "eastmoor")).scalar_one()
    assert untouched == len(a.references) and changed == 0, f"after {row.method} {row.path}, A's submissions were erased or given a status"


def test_the_metrics_carry_nothing_of_tenant_as_data(world: tuple[EmbeddedHub, World]) -> None:
    hub, a = world
    for row in MATRIX:  # whatever B does, the metrics it can read stay free of A
        call(hub, a, row)
    metrics = hub.client.get("/metrics")
    assert metrics.status_code == 200 and "hub_submissions_total" in metrics.text
    assert leaks(metrics.text, a, metrics=True) == []
