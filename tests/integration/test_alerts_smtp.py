"""E-mail alerts and the daily digest against a real SMTP server (the aiosmtpd sink) and a real
PostgreSQL: one outage sends one mail at once and one summary, an open circuit one mail, two
processes never both send, and the digest reports what was stored."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import insert

from hub.config.files import CircuitPolicy
from hub.config.settings import Settings
from hub.delivery.alerts import Alerts, Event
from hub.delivery.digest import LONDON, Digest
from hub.runtime import Runtime
from hub.store import alerts as store
from hub.store.migrate import upgrade
from hub.store.tables import attempts, deliveries, submissions
from simulators.control import FailurePlan
from simulators.mail import MailSink
from tests.support import embedded
from tests.support.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
TO = "ict-alerts@eastmoor.example.org"


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    """The shipped configuration, with alerts for Eastmoor through its feedback mailbox's mail server."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    tenants = target / "tenants.yaml"
    text = tenants.read_text(encoding="utf-8")
    marker = "    reference_prefix: EDC\n"
    assert marker in text
    tenants.write_text(text.replace(marker, marker + f"    alerts: {{to: [{TO}], mail_connector: feedback-email}}\n", 1), encoding="utf-8")
    return target


def mail_env(sink: MailSink) -> dict[str, str]:
    return {"SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port)}


def sample(form: str, name: str) -> Any:
    return json.loads((ROOT / "schemas" / form / "samples" / f"{name}.json").read_text(encoding="utf-8"))


def alert_mails(sink: MailSink) -> list[Any]:
    return [m for m in sink.state.messages() if m.message["X-Hub-Tenant"] == "eastmoor"]


def runtime_on(url: str, config_dir: Path, sink: MailSink) -> Runtime:
    """A second hub process's runtime on the same database (its own engine and connectors)."""
    settings = Settings(database_url=url, broker_url="memory://", config_dir=config_dir)
    return Runtime.build(settings, {**os.environ, "HUB_DEMO_API_KEY": "k" * 20, **mail_env(sink)})


def test_fifty_parks_in_one_outage_send_one_mail_at_once_and_one_summary(
    tmp_path: Path, postgres: PostgresServer, sink: MailSink, config_dir: Path
) -> None:
    url = postgres.create_database(f"hub_alerts_{secrets.token_hex(3)}")
    with embedded.embedded_hub(tmp_path, env=mail_env(sink), config_dir=config_dir, database_url=url) as hub:
        hub.crm.failures.arm(FailurePlan(count=1000, status=400))
        posted = [hub.post("general-enquiry", sample("general-enquiry", "question-only")) for _ in range(50)]
        assert [r.status_code for r in posted] == [202] * 50
        reasons = set()
        for response in posted:
            [delivery] = hub.wait_until_settled(response.json()["reference"])["deliveries"]
            assert delivery["state"] == "parked"
            reasons.add(delivery["last_error"])
        first = wait_for_mails(sink, 1)
        # the rest of the outage waits in the database, counted, for the summary
        waiting = wait_until(lambda: store.state(hub.runtime.engine, store.Key("eastmoor", "crm", "parked")).pending
                             == 50 - sum(_count(m.subject) for m in first))
        assert waiting and len(alert_mails(sink)) == 1
        # a quarter of an hour later, the worker's alerts job sends what waited, as one summary
        later = datetime.now(UTC) + timedelta(seconds=hub.runtime.settings.alert_window_seconds + 1)
        sent = Alerts(hub.runtime).flush(now=later)
        again = Alerts(hub.runtime).flush(now=later + timedelta(seconds=5))
    assert len(first) == 1, [m.subject for m in first]
    [mail] = first
    assert mail.rcpt_tos == [TO] and "crm" in mail.subject and "parked" in mail.subject
    [reason] = reasons  # one outage, one reason: the mail quotes what staff will see on the delivery
    assert f"Last reason: {reason[:300]}" in mail.message.get_content()
    assert (sent, again) == (1, 0)
    mails = alert_mails(sink)
    assert len(mails) == 2 and sink.state.stats()["duplicates"] == 0
    summary = next(m for m in mails if m.message_id != mail.message_id)
    counts = [_count(m.subject) for m in mails]
    assert sum(counts) == 50, [m.subject for m in mails]
    assert "in the last 15 min" in summary.subject


def _count(subject: str) -> int:
    words = subject.split()
    index = words.index("parked")
    return int(words[index - 2]) if words[index - 1] in ("delivery", "deliveries") else 1


def wait_until(check: Any, timeout: float = 15.0) -> bool:
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not check():
        if datetime.now(UTC) > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def wait_for_mails(sink: MailSink, count: int, timeout: float = 15.0) -> list[Any]:
    wait_until(lambda: len(alert_mails(sink)) >= count, timeout)
    return alert_mails(sink)


def test_an_open_circuit_sends_one_mail(tmp_path: Path, postgres: PostgresServer, sink: MailSink, config_dir: Path) -> None:
    url = postgres.create_database(f"hub_alerts_{secrets.token_hex(3)}")
    circuit = CircuitPolicy(failure_threshold=3, open_seconds=120)
    with embedded.embedded_hub(tmp_path, env=mail_env(sink), config_dir=config_dir, database_url=url, circuit=circuit) as hub:
        hub.crm.failures.arm(FailurePlan(count=1000, status=503))
        for _ in range(8):
            assert hub.post("general-enquiry", sample("general-enquiry", "question-only")).status_code == 202
        wait_for_mails(sink, 1)
        # every sending thread that saw the circuit open has told the alerts by now
        wait_until(lambda: store.state(hub.runtime.engine, store.Key("eastmoor", "crm", "circuit")) is not None)
        threading.Event().wait(1.0)
        sent_later = Alerts(hub.runtime).flush(now=datetime.now(UTC) + timedelta(minutes=16))
    mails = alert_mails(sink)
    assert [m.subject for m in mails] == ["[Eastmoor District Council (demo)] crm: circuit opened"]
    assert sent_later == 0  # the circuit opened once: nothing more to summarise
    assert "3 failures in a row" in mails[0].message.get_content()


def test_a_second_process_does_not_send_the_same_alert_again(
    tmp_path: Path, postgres: PostgresServer, sink: MailSink, config_dir: Path
) -> None:
    url = postgres.create_database(f"hub_alerts_{secrets.token_hex(3)}")
    one, two = runtime_on(url, config_dir, sink), runtime_on(url, config_dir, sink)
    try:
        upgrade(one.engine)
        processes = [Alerts(one), Alerts(two)]
        start = threading.Barrier(2)

        def park_many(alerts: Alerts) -> None:
            start.wait()
            for _ in range(25):
                alerts.record([Event("eastmoor", "crm", "parked", datetime.now(UTC), "HTTP 503 from crm")])

        threads = [threading.Thread(target=park_many, args=(a,)) for a in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(alert_mails(sink)) == 1
        later = datetime.now(UTC) + timedelta(minutes=16)
        flushed: list[int] = []
        start = threading.Barrier(2)

        def flush(alerts: Alerts) -> None:
            start.wait()
            flushed.append(alerts.flush(now=later))

        threads = [threading.Thread(target=flush, args=(a,)) for a in processes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        one.close()
        two.close()
    assert sorted(flushed) == [0, 1]
    mails = alert_mails(sink)
    assert len(mails) == 2 and sink.state.stats()["duplicates"] == 0
    assert sum(_count(m.subject) for m in mails) == 50


def test_a_failed_mail_is_sent_at_the_next_flush_and_never_fails_the_caller(
    tmp_path: Path, postgres: PostgresServer, sink: MailSink, config_dir: Path
) -> None:
    url = postgres.create_database(f"hub_alerts_{secrets.token_hex(3)}")
    runtime = runtime_on(url, config_dir, sink)
    try:
        upgrade(runtime.engine)
        alerts = Alerts(runtime)
        sink.state.fail(1, 451)
        alerts.record([Event("eastmoor", "crm", "parked", datetime.now(UTC), "HTTP 503 from crm")])
        assert alert_mails(sink) == []
        assert alerts.flush() == 1
    finally:
        runtime.close()
    [mail] = alert_mails(sink)
    assert "1 delivery parked" in mail.subject


# -- the daily digest ---------------------------------------------------------------------------


def _seed(runtime: Runtime, now: datetime) -> None:
    """Yesterday (UK) for Eastmoor: 3 submissions; crm delivered 2 and parked 1 after 2 failed
    attempts; and one feedback-email delivery parked three days before. One Westvale submission."""
    yesterday_noon = datetime.combine(now.astimezone(LONDON).date() - timedelta(days=1), time(12), LONDON).astimezone(UTC)
    three_days = yesterday_noon - timedelta(days=2)

    def submission(conn: Any, tenant: str, at: datetime) -> int:
        reference = f"T-{secrets.token_hex(5).upper()}"
        row = conn.execute(insert(submissions).values(
            reference=reference, tenant=tenant, client_id="portal", form_id="general-enquiry", form_version=1,
            payload=None, received_at=at, body_sha256=hashlib.sha256(reference.encode()).hexdigest(),
        ).returning(submissions.c.id)).scalar_one()
        return int(row)

    def delivery(conn: Any, sub: int, tenant: str, connector: str, state: str, at: datetime, outcomes: list[str]) -> None:
        did = conn.execute(insert(deliveries).values(
            submission_id=sub, tenant=tenant, connector=connector, state=state, attempts=len(outcomes),
            created_at=at, updated_at=at + timedelta(minutes=len(outcomes)),
        ).returning(deliveries.c.id)).scalar_one()
        for number, outcome in enumerate(outcomes, 1):
            moment = at + timedelta(minutes=number)
            conn.execute(insert(attempts).values(delivery_id=did, tenant=tenant, number=number, started_at=moment,
                                                 finished_at=moment, outcome=outcome))

    with runtime.engine.begin() as conn:
        for minutes in (0, 10):
            delivery(conn, submission(conn, "eastmoor", yesterday_noon + timedelta(minutes=minutes)), "eastmoor", "crm", "delivered",
                     yesterday_noon + timedelta(minutes=minutes), ["delivered"])
        delivery(conn, submission(conn, "eastmoor", yesterday_noon), "eastmoor", "crm", "parked", yesterday_noon,
                 ["transient", "transient", "permanent"])
        delivery(conn, submission(conn, "eastmoor", three_days), "eastmoor", "feedback-email", "parked", three_days, ["permanent"])
        delivery(conn, submission(conn, "westvale", yesterday_noon), "westvale", "crm", "parked", yesterday_noon, ["permanent"])


def test_the_daily_digest_reports_yesterday_once_whatever_runs_it(
    tmp_path: Path, postgres: PostgresServer, sink: MailSink, config_dir: Path
) -> None:
    # nine in the morning UK time today, computed from now: past the default digest hour (7)
    morning = datetime.combine(datetime.now(UTC).astimezone(LONDON).date(), time(9), LONDON)
    url = postgres.create_database(f"hub_digest_{secrets.token_hex(3)}")
    with time_machine.travel(morning, tick=True):
        one, two = runtime_on(url, config_dir, sink), runtime_on(url, config_dir, sink)
        try:
            upgrade(one.engine)
            _seed(one, datetime.now(UTC))
            first = Digest(one).due()
            second = Digest(two).due()
        finally:
            one.close()
            two.close()
    assert [(s.tenant, s.outcome) for s in first] == [("eastmoor", "sent")]
    assert [(s.tenant, s.outcome) for s in second] == [("eastmoor", "already-sent")]
    [mail] = alert_mails(sink)
    yesterday = morning.date() - timedelta(days=1)
    body = mail.message.get_content()
    assert mail.rcpt_tos == [TO]
    assert mail.subject == f"[Eastmoor District Council (demo)] Daily digest for {yesterday:%d/%m/%Y}: 3 failed attempt(s), 2 parked"
    assert "Submissions received: 3" in body
    assert "Deliveries parked now: 2" in body
    oldest = datetime.combine(yesterday - timedelta(days=2), time(12), LONDON) + timedelta(minutes=1)
    assert f"Oldest parked: since {oldest:%d/%m/%Y %H:%M} (2 day(s) ago)" in body
    assert "  crm: delivered 2, failed 3, parked 1; parked now 1" in body
    assert "  feedback-email: delivered 0, failed 1" not in body  # three days ago is not yesterday
    assert "  feedback-email: delivered 0, failed 0, parked 0; parked now 1" in body
    assert "westvale" not in body.lower()
