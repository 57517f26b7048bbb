"""Schemathesis against the hub's own OpenAPI document, on the embedded hub: every public operation
gets generated and hostile inputs; no 5xx, and every response is what the document says it is.

Every built-in check runs (status codes, content types, headers, bodies, negative data rejected,
valid data accepted, auth not ignored, unsupported methods), plus one stricter check of our own:
a response body's media type must be declared for its status, since the built-in content-type
check passes any body when the document lists the status without `content`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from hub.api.app import create_app
from hub.attachments.storage import FileStore
from hub.config.settings import Settings
from hub.runtime import Runtime
from tests.support.embedded import EmbeddedHub, embedded_hub

MAX_EXAMPLES = 50


def openapi_document() -> dict[str, Any]:
    """The document `/openapi.json` serves, built without serving it: schemathesis 4.32's fixture
    loader (`schemathesis.pytest.from_fixture`) fails on pytest 9 (`Function` has no `_nodeid`),
    so the schema must exist when the module is collected."""
    document: dict[str, Any] = create_app(Runtime.build(Settings(database_url="sqlite://"), {})).openapi()
    return document


DOCUMENT = openapi_document()
# A GOV.UK Forms body must fit GOV.UK's schema, which the document gives, and then the hub form
# its form_id picks (config/govuk/forms.yaml), which it cannot: `{"form_id": "1", "": null}` fits
# the first and not the second, and is refused 422 naming the fields. Only for that operation may
# schema-valid data be refused with 422; every other check holds there too.
CONFIG = schemathesis.Config.from_str("""
[[operations]]
include-path = "/v1/govuk-forms/submissions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# An upload must name its file in one of three places (X-Filename, Content-Disposition or the
# filename query parameter), which OpenAPI cannot say: each is optional alone, and a request with
# none is refused 422 naming all three. Its `form` and `field` query parameters go together (a
# generated form id is a 404, a field that is not the form's attachment field a 422).
[[operations]]
include-path = "/v1/attachments"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429", "5xx"]
""")
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHub]:
    # the fuzzer sends thousands of requests and wrong keys from one address: limits out of its way
    # (a 429 is documented everywhere; tests/unit/test_rate_limits.py is about the limits)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HUB_CLIENT_RATE_LIMIT", "HUB_TENANT_RATE_LIMIT", "HUB_AUTH_FAILURE_LIMIT"):
            patch.setenv(name, "1000000/minute")
        with embedded_hub(tmp_path_factory.mktemp("schemathesis")) as running:
            # uploaded attachments in the test's own directory, not HUB_DATA_DIR
            running.app.state.attachment_store = FileStore(tmp_path_factory.mktemp("attachments"), running.runtime.sealer.fernet)
            yield running


STAFF, CLIENT = "role:staff", "role:client"


@schema.auth(refresh_interval=None)
class HubTokens:
    """Staff sign in to the admin API; front ends use their client's API key everywhere else.

    Schemathesis applies auth while it builds cases, before the hub (and its random tokens) exists,
    so cases carry a role placeholder that `with_token` swaps for the real token. Cases that drop
    or garble the header on purpose keep what schemathesis made, and must be refused."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return STAFF if case.path.startswith("/v1/admin") else CLIENT

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def with_token(case: schemathesis.Case, hub: EmbeddedHub) -> None:
    tokens = {f"Bearer {STAFF}": f"Bearer {hub.staff_token}", f"Bearer {CLIENT}": f"Bearer {hub.key}"}
    sent = (case.headers or {}).get("Authorization")
    if case.headers is not None and sent in tokens:
        case.headers["Authorization"] = tokens[sent]


def response_content_is_documented(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """A response with a body declares that body's media type under its status code."""
    if not response.content:
        return None
    responses = case.operation.definition.raw.get("responses", {})
    status = str(response.status_code)
    declared = responses.get(status) or responses.get(f"{status[0]}XX") or responses.get("default")
    if declared is None:
        return None  # an undocumented status: status_code_conformance reports it
    media = (response.headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    documented = sorted(declared.get("content", {}))
    if media not in documented:
        raise AssertionError(
            f"{case.method} {case.path} answered {status} with a {media or 'untyped'} body, "
            f"but the document declares {documented or 'no content'} for {status}"
        )
    return True


def test_the_running_hub_serves_the_document_under_test(hub: EmbeddedHub) -> None:
    assert httpx.get(f"{hub.url}/openapi.json").json() == DOCUMENT


def test_the_document_covers_every_public_endpoint() -> None:
    operations = {f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item}
    assert {
        "POST /v1/forms/{form_id}/submissions",
        "GET /v1/submissions/{reference}",
        "POST /v1/govuk-forms/submissions",
        "GET /open311/v2/services.json",
        "POST /open311/v2/requests.json",
        "GET /v1/admin/connectors",
        "POST /v1/admin/deliveries/replay",
        "GET /healthz",
        "GET /readyz",
    } <= operations


@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_public_operation_answers_as_its_openapi_document_says(case: schemathesis.Case, hub: EmbeddedHub) -> None:
    with_token(case, hub)
    # a 500 logs a traceback, which the embedded hub's console renderer draws slowly
    case.call_and_validate(base_url=hub.url, additional_checks=[response_content_is_documented], timeout=30)
