"""Intake and status as a front end sees them, over HTTP, on the embedded hub."""

import json
import socket

from hub.config.settings import Settings
from tests.support.embedded import EmbeddedHub

SCHEMAS = Settings().schemas_dir


def sample(form_id: str, name: str) -> dict:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text())


def assert_problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] == f"/problems/{kind}" and body["title"] and body["detail"]
    return body


def test_a_valid_submission_gets_a_reference_and_a_status_url_at_once(hub: EmbeddedHub) -> None:
    response = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn"))
    assert response.status_code == 202
    body = response.json()
    assert body["reference"].startswith("EDC-") and len(body["reference"]) == 14
    assert body["status_url"].endswith(f"/v1/submissions/{body['reference']}")
    assert response.headers["location"] == body["status_url"]


def test_the_status_shows_the_crm_case_reference_once_delivered(hub: EmbeddedHub) -> None:
    reference = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
    status = hub.wait_until_settled(reference)
    [delivery] = status["deliveries"]
    case = hub.crm.cases()[0]
    assert delivery == {**delivery, "connector": "crm", "state": "delivered", "attempts": 1, "last_error": None}
    assert delivery["external_reference"] == case["reference"]
    assert case["record"]["data"][0]["source_ref"] == reference
    assert status["form_id"] == "missed-bin-collection" and status["received_at"]


def test_an_invalid_submission_lists_every_failing_field(hub: EmbeddedHub) -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    del payload["email"]
    payload["address"] = {"uprn": "12"}
    body = assert_problem(hub.post("missed-bin-collection", payload), 422, "validation-failed")
    assert {e["pointer"]: e["detail"] for e in body["errors"]} == {
        "/email": "Email address is required",
        "/address/uprn": "Enter a 12-digit UPRN, like 100023336956",
    }
    assert hub.crm.stats()["requests"] == 0


def test_an_unknown_form_is_not_found(hub: EmbeddedHub) -> None:
    assert_problem(hub.post("missed-unicorn", {}), 404, "not-found")


def test_a_client_cannot_post_a_form_it_is_not_allowed(hub: EmbeddedHub) -> None:
    payload = sample("report-fly-tipping", "uprn-with-reporter")
    assert_problem(hub.post("report-fly-tipping", payload, key=hub.westvale_key), 404, "not-found")


def test_malformed_json_is_a_bad_request(hub: EmbeddedHub) -> None:
    response = hub.client.post(
        "/v1/forms/missed-bin-collection/submissions",
        content=b'{"name": ',
        headers={"Authorization": f"Bearer {hub.key}", "Content-Type": "application/json"},
    )
    assert "not valid JSON" in assert_problem(response, 400, "malformed-json")["detail"]


def test_a_body_that_is_not_json_is_refused(hub: EmbeddedHub) -> None:
    response = hub.client.post(
        "/v1/forms/missed-bin-collection/submissions",
        content=b"name=Bryn",
        headers={"Authorization": f"Bearer {hub.key}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415, "unsupported-media-type")


def test_a_body_over_the_limit_is_refused_from_its_declared_length(hub: EmbeddedHub) -> None:
    response = hub.client.post(
        "/v1/forms/missed-bin-collection/submissions",
        content=b"{" + b" " * (70 * 1024) + b"}",
        headers={"Authorization": f"Bearer {hub.key}", "Content-Type": "application/json"},
    )
    assert assert_problem(response, 413, "body-too-large")["limit"] == 64 * 1024


def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(hub: EmbeddedHub) -> None:
    # a raw socket, so the test controls exactly how much is sent: 128 KiB of a claimed endless body
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                "POST /v1/forms/missed-bin-collection/submissions HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {hub.key}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b" " * 16384
        try:
            for _ in range(8):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the hub may close the connection as soon as it has answered
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert "application/problem+json" in reply


def test_a_missing_or_unknown_api_key_is_unauthorised(hub: EmbeddedHub) -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    missing = hub.client.post("/v1/forms/missed-bin-collection/submissions", json=payload)
    assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(hub.post("missed-bin-collection", payload, key="not-a-key"), 401, "unauthorized")
    assert_problem(hub.client.get("/v1/submissions/EDC-0000000000"), 401, "unauthorized")


def test_a_repeated_post_with_the_same_idempotency_key_returns_the_first_reference(hub: EmbeddedHub) -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    first = hub.post("missed-bin-collection", payload, headers={"Idempotency-Key": "portal-form-81723"})
    again = hub.post("missed-bin-collection", payload, headers={"Idempotency-Key": "portal-form-81723"})
    assert first.status_code == again.status_code == 202
    assert first.json()["reference"] == again.json()["reference"]
    hub.wait_until_settled(first.json()["reference"])
    assert hub.crm.stats()["cases"] == 1


def test_the_same_idempotency_key_with_another_body_is_a_conflict(hub: EmbeddedHub) -> None:
    payload = sample("missed-bin-collection", "general-uprn")
    first = hub.post("missed-bin-collection", payload, headers={"Idempotency-Key": "k-1"})
    payload["bin_type"] = "food"
    body = assert_problem(hub.post("missed-bin-collection", payload, headers={"Idempotency-Key": "k-1"}), 409, "idempotency-conflict")
    assert body["reference"] == first.json()["reference"]


def test_a_client_sees_only_its_own_tenants_submissions(hub: EmbeddedHub) -> None:
    reference = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
    assert hub.status(reference).status_code == 200
    assert_problem(hub.status(reference, key=hub.westvale_key), 404, "not-found")


def test_health_readiness_metrics_and_openapi_are_served(hub: EmbeddedHub) -> None:
    hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn"))
    assert hub.client.get("/healthz").json() == {"status": "ok"}
    ready = hub.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True, "broker": True, "relay": True}
    assert 'hub_submissions_total{form="missed-bin-collection",outcome="accepted"}' in hub.client.get("/metrics").text
    spec = hub.client.get("/openapi.json").json()
    assert "/v1/forms/{form_id}/submissions" in spec["paths"] and "/v1/submissions/{reference}" in spec["paths"]
    assert hub.client.get("/docs").status_code == 200


def planning_errors(hub: EmbeddedHub, payload: dict) -> dict[str, str]:
    body = assert_problem(hub.post("planning-application", payload), 422, "validation-failed")
    return {e["pointer"]: e["detail"] for e in body["errors"]}


def test_an_odp_application_missing_a_field_of_its_own_metadata_kind_is_told_that_field(hub: EmbeddedHub) -> None:
    # ODP metadata is anyOf [any provider (source "Any"), PlanX (source "PlanX", with a service)]:
    # a PlanX application without its service must hear of the service, not that source should be "Any"
    payload = sample("planning-application", "prior-approval-solar-panels")
    assert payload["metadata"]["source"] == "PlanX"
    del payload["metadata"]["service"]
    assert planning_errors(hub, payload) == {"/metadata/service": "Service is required"}


def test_a_listed_building_designation_without_its_description_is_told_only_that(hub: EmbeddedHub) -> None:
    # designations are a nested anyOf, one branch per designation `value`
    payload = sample("planning-application", "prior-approval-solar-panels")
    payload["data"]["property"]["planning"]["designations"].append({"value": "listed.gradeOne", "intersects": True})
    assert planning_errors(hub, payload) == {"/data/property/planning/designations/3/description": "Description is required"}


def test_a_value_no_branch_accepts_is_answered_with_the_values_that_are(hub: EmbeddedHub) -> None:
    payload = sample("planning-application", "prior-approval-solar-panels")
    payload["metadata"]["source"] = "Elsewhere"
    assert planning_errors(hub, payload) == {"/metadata/source": "Source must be one of: Any, PlanX"}
    payload = sample("planning-application", "prior-approval-solar-panels")
    payload["data"]["property"]["planning"]["designations"].append(
        {"value": "listed.gradeFour", "description": "Listed building", "intersects": True})
    [(pointer, detail)] = planning_errors(hub, payload).items()
    assert pointer == "/data/property/planning/designations/3/value"
    # ODP lists 72 designations: the first twelve are named, and how many more there are
    assert detail.startswith("Value must be one of: aerodrome, archaeologicalPriorityArea, ")
    assert detail.endswith(" (and 60 more)") and detail.count(", ") == 11
