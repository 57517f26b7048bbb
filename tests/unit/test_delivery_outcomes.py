"""What happens to a delivery when the back office fails, as the status API shows it."""

import json
import time

from sqlalchemy import select

from hub.config.settings import Settings
from hub.store.tables import attempts
from simulators.crm import FailurePlan
from tests.support.embedded import FAST_RETRY, EmbeddedHub

SCHEMAS = Settings().schemas_dir


def sample(form_id: str, name: str) -> dict:
    return json.loads((SCHEMAS / form_id / "samples" / f"{name}.json").read_text())


def submit(hub: EmbeddedHub, name: str = "general-uprn") -> str:
    response = hub.post("missed-bin-collection", sample("missed-bin-collection", name))
    assert response.status_code == 202
    return str(response.json()["reference"])


def test_transient_failures_are_retried_until_the_back_office_accepts(hub: EmbeddedHub) -> None:
    hub.crm.arm(FailurePlan(count=2, mode="status", status=503))
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 3
    assert hub.crm.stats() == {"cases": 1, "requests": 3, "duplicates": 0}


def test_a_timeout_counts_as_transient(hub: EmbeddedHub) -> None:
    options = hub.runtime.config.connectors["crm"].options
    hub.runtime.config.connectors["crm"] = hub.runtime.config.connectors["crm"].model_copy(
        update={"options": {**options, "timeout_seconds": 0.3}}
    )
    hub.crm.arm(FailurePlan(count=1, mode="timeout", seconds=1.5))
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "delivered" and delivery["attempts"] == 2


def test_a_delivery_is_parked_with_the_reason_after_the_last_retry(hub: EmbeddedHub) -> None:
    hub.crm.arm(FailurePlan(count=100, mode="status", status=502))
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "parked"
    assert delivery["attempts"] == FAST_RETRY.max_attempts
    assert delivery["last_error"] == "crm answered HTTP 502"
    # parked means parked: no further attempts reach the back office
    requests = hub.crm.stats()["requests"]
    time.sleep(0.5)
    assert hub.crm.stats()["requests"] == requests == FAST_RETRY.max_attempts


def test_a_refusal_parks_at_once_with_the_back_offices_words(hub: EmbeddedHub) -> None:
    hub.crm.arm(FailurePlan(count=1, mode="status", status=422))
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "parked" and delivery["attempts"] == 1
    assert delivery["last_error"].startswith("crm refused the record: HTTP 422")


def test_a_wrong_credential_parks_rather_than_hammering_the_back_office(hub: EmbeddedHub) -> None:
    hub.crm.token = "rotated-token"
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "parked" and "HTTP 401" in delivery["last_error"]
    assert hub.crm.stats()["cases"] == 0


def test_a_garden_bin_reaches_both_back_offices_and_a_failure_in_one_does_not_hold_the_other(hub: EmbeddedHub) -> None:
    hub.garden.arm(FailurePlan(count=100, mode="status", status=503))
    status = hub.wait_until_settled(submit(hub, "garden-uprn"))
    states = {d["connector"]: d["state"] for d in status["deliveries"]}
    assert states == {"crm": "delivered", "garden-waste": "parked"}
    assert hub.crm.stats()["cases"] == 1 and hub.garden.stats()["cases"] == 0


def test_every_attempt_is_kept_for_the_audit_trail(hub: EmbeddedHub) -> None:
    hub.crm.arm(FailurePlan(count=1, mode="status", status=500))
    hub.wait_until_settled(submit(hub))
    with hub.runtime.engine.connect() as conn:
        rows = conn.execute(select(attempts.c.number, attempts.c.outcome, attempts.c.error).order_by(attempts.c.id)).all()
    assert [tuple(r) for r in rows] == [(1, "transient", "crm answered HTTP 500"), (2, "delivered", None)]


def test_a_missing_credential_parks_at_once_naming_the_variable(hub: EmbeddedHub) -> None:
    hub.runtime.secrets._environ.pop("CRM_API_TOKEN")
    [delivery] = hub.wait_until_settled(submit(hub))["deliveries"]
    assert delivery["state"] == "parked" and delivery["attempts"] == 1
    assert delivery["last_error"] == "configuration: environment variable CRM_API_TOKEN is not set"
