"""Payment before delivery, on the embedded hub with the GOV.UK Pay and waste simulators: a paid
form's deliveries are held until GOV.UK Pay says success, and cancelled when the payment fails,
is cancelled or expires; the return URL, the worker's job and reconcile all settle it."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.background import jobs
from hub.payments.service import Payments
from simulators.crm import FailurePlan
from tests.support.payments import PAY_KEY, PaidHub, paid_hub

pytestmark = pytest.mark.unit


@pytest.fixture
def paid(tmp_path: Path) -> Any:
    with paid_hub(tmp_path) as found:
        yield found


def statuses(body: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in body["timeline"] if entry["event"] == "status"]


def test_a_paid_form_is_answered_202_with_the_next_url_and_nothing_is_delivered_before_payment(paid: PaidHub) -> None:
    answer = paid.submit()
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "awaiting_payment"
    assert body["payment"]["next_url"].startswith(f"{paid.pay_url}/secure/")
    assert body["payment"]["amount_pence"] == 5500
    shown = paid.hub.status(body["reference"]).json()
    assert [d["state"] for d in shown["deliveries"]] == ["held"]
    assert shown["status"] == "awaiting_payment" and statuses(shown) == ["payment_created"]
    assert paid.pay.payments()[0]["reference"] == body["reference"]
    assert paid.waste_requests() == []


def test_paying_and_coming_back_delivers_to_the_back_office(paid: PaidHub) -> None:
    body = paid.submit().json()
    back = paid.resident_chooses(body["payment"]["payment_id"], "complete")
    portal = paid.follow_return(back)
    assert portal.status_code == 303
    assert portal.headers["location"] == f"https://portal.example.org/garden-waste/done?reference={body['reference']}"
    done = paid.wait_for(body["reference"], lambda b: b["deliveries"][0]["state"] == "delivered")
    assert done["status"] == "paid" and done["payment"]["next_url"] is None
    assert statuses(done)[-1] == "payment_success"
    sent = paid.waste_requests()
    assert len(sent) == 1 and body["reference"] in str(sent[0])


@pytest.mark.parametrize(("action", "status"), [("fail", "payment_failed"), ("cancel", "payment_cancelled")])
def test_a_failed_or_cancelled_payment_cancels_the_submission_and_nothing_is_delivered(paid: PaidHub, action: str, status: str) -> None:
    body = paid.submit().json()
    paid.follow_return(paid.resident_chooses(body["payment"]["payment_id"], action))
    shown = paid.hub.status(body["reference"]).json()
    assert shown["status"] == "cancelled"
    assert [d["state"] for d in shown["deliveries"]] == ["cancelled"]
    assert statuses(shown)[-1] == status
    assert paid.waste_requests() == []


def test_an_abandoned_payment_expires_and_the_workers_job_cancels_the_submission(tmp_path: Path) -> None:
    with paid_hub(tmp_path, expiry_seconds=0.2) as paid:
        body = paid.submit().json()
        job = next(j for j in jobs(paid.hub.runtime) if j.name == "payments")
        time.sleep(0.3)
        job.run()
        shown = paid.hub.status(body["reference"]).json()
        assert shown["status"] == "cancelled"
        assert statuses(shown)[-1] == "payment_expired"
        assert shown["deliveries"][0]["state"] == "cancelled"
        assert "expired" in shown["deliveries"][0]["last_error"]
        assert paid.waste_requests() == []


def test_reconcile_settles_a_payment_whose_return_was_lost(paid: PaidHub) -> None:
    body = paid.submit().json()
    other = paid.submit(**{"Idempotency-Key": "second-one"}).json()
    # the resident paid, but the browser never came back to the hub
    paid.resident_chooses(body["payment"]["payment_id"], "complete")
    settled = Payments.of(paid.hub.runtime).reconcile(timedelta(0))
    assert sorted((row.reference, outcome) for row, outcome in settled) == sorted(
        [(body["reference"], "success"), (other["reference"], "pending")])
    done = paid.wait_for(body["reference"], lambda b: b["deliveries"][0]["state"] == "delivered")
    assert done["status"] == "paid"
    assert paid.hub.status(other["reference"]).json()["status"] == "awaiting_payment"


def test_a_payment_service_outage_keeps_the_submission_and_the_payment_is_created_later(paid: PaidHub) -> None:
    paid.pay.failures.arm(FailurePlan(count=1, status=503))
    answer = paid.submit()
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "payment_unavailable" and body["payment"]["next_url"] is None
    assert paid.hub.status(body["reference"]).json()["deliveries"][0]["state"] == "held"
    Payments.of(paid.hub.runtime).run()
    shown = paid.hub.status(body["reference"]).json()
    assert shown["status"] == "awaiting_payment"
    assert shown["payment"]["next_url"].startswith(f"{paid.pay_url}/secure/")
    # the same submission, one payment: the retry is the same idempotent create
    assert len(paid.pay.payments()) == 1


def test_the_api_key_never_reaches_the_logs_or_the_status(paid: PaidHub, capsys: pytest.CaptureFixture[str]) -> None:
    paid.pay.failures.arm(FailurePlan(count=1, status=500))
    body = paid.submit().json()
    Payments.of(paid.hub.runtime).run()
    seen = capsys.readouterr()
    assert PAY_KEY not in seen.out + seen.err
    assert PAY_KEY not in paid.hub.status(body["reference"]).text


def test_an_unknown_return_address_is_a_404_problem(paid: PaidHub) -> None:
    answer = paid.hub.client.get("/v1/payments/return/not-a-token")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_a_repeated_submission_keeps_one_payment(paid: PaidHub) -> None:
    first = paid.submit(**{"Idempotency-Key": "portal-gw-1"}).json()
    again = paid.submit(**{"Idempotency-Key": "portal-gw-1"})
    assert again.status_code == 202 and again.json()["reference"] == first["reference"]
    assert len(paid.pay.payments()) == 1


def test_config_check_names_a_fee_for_an_unknown_form_and_a_bad_amount(tmp_path: Path) -> None:
    import shutil

    from hub.config.checks import check_configuration
    from hub.config.settings import Settings
    from hub.errors import ConfigError
    from hub.payments.config import load_fees

    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    (config / "payments" / "payments.yaml").write_text(
        "forms:\n  no-such-form:\n    amount_pence: 100\n    description: x\n    return_url: https://portal.example.org/\n")
    problems = check_configuration(Settings(config_dir=config), {"WASTE_PASSWORD": "x"})
    assert any("fee for unknown form 'no-such-form'" in p for p in problems), problems
    (config / "payments" / "payments.yaml").write_text(
        "forms:\n  garden-waste-paid:\n    amount_pence: 0\n    description: x\n    return_url: https://portal.example.org/\n")
    with pytest.raises(ConfigError, match="amount_pence"):
        load_fees(config)


def test_retention_purges_a_cancelled_submission_and_keeps_one_awaiting_payment(paid: PaidHub) -> None:
    from datetime import UTC, datetime

    from hub.store.personal_data import purge

    cancelled = paid.submit().json()
    paid.follow_return(paid.resident_chooses(cancelled["payment"]["payment_id"], "cancel"))
    waiting = paid.submit(**{"Idempotency-Key": "still-paying"}).json()
    later = datetime.now(UTC) + timedelta(days=1)
    assert purge(paid.hub.runtime.engine, "eastmoor", "garden-waste-paid", later, later) == 1
    assert paid.hub.status(waiting["reference"]).json()["status"] == "awaiting_payment"


def test_a_payment_created_twice_by_intake_and_the_job_is_one_payment_and_one_event(paid: PaidHub) -> None:
    from hub.store import payments as store

    paid.pay.failures.arm(FailurePlan(count=1, status=503))
    body = paid.submit().json()
    service = Payments.of(paid.hub.runtime)
    row = store.for_reference(paid.hub.runtime.engine, "eastmoor", body["reference"])
    assert row is not None and row.payment_id is None
    # both saw the payment still to create, and both asked GOV.UK Pay with the same Idempotency-Key
    service.refresh(row)
    service.refresh(row)
    shown = paid.hub.status(body["reference"]).json()
    assert statuses(shown) == ["payment_created"]
    assert len(paid.pay.payments()) == 1
