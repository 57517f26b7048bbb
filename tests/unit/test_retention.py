"""Retention: payloads purged N days after every delivery succeeded, metadata and references kept,
by `hub retention run` and on a worker's schedule."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from hub.background import jobs
from hub.config.files import HubConfig, RetentionRule
from hub.privacy import retention
from hub.privacy.sealing import Sealer
from hub.store import submissions as store
from hub.store.db import make_engine
from hub.store.migrate import upgrade
from hub.store.replay import audit_entries
from hub.store.tables import attempts, deliveries
from tests.support.embedded import EmbeddedHub
from tests.support.privacy import links_of, messages_of, plant, row, sample

REPO = Path(__file__).resolve().parents[2]
SEALER = Sealer.from_keys([Fernet.generate_key().decode()])
NINETY = (RetentionRule(days=90),)


def config(*rules: RetentionRule) -> HubConfig:
    return HubConfig(tenants={}, clients={}, connectors={}, routes=(), retention=rules)


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_the_most_specific_rule_wins_form_and_tenant_then_form_then_tenant_then_everything() -> None:
    rules = (
        RetentionRule(days=90),
        RetentionRule(tenants=("westvale",), days=365),
        RetentionRule(form="report-fly-tipping", days=30),
        RetentionRule(form="report-fly-tipping", tenants=("westvale",), days=7),
    )
    assert retention.rule_for(rules, "westvale", "report-fly-tipping") is rules[3]
    assert retention.rule_for(rules, "eastmoor", "report-fly-tipping") is rules[2]
    assert retention.rule_for(rules, "westvale", "missed-bin-collection") is rules[1]
    assert retention.rule_for(rules, "eastmoor", "missed-bin-collection") is rules[0]
    assert retention.rule_for(rules[2:], "eastmoor", "missed-bin-collection") is None


def test_only_submissions_whose_deliveries_all_succeeded_long_enough_ago_lose_their_payload(engine: Engine) -> None:
    old = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"))
    recent = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), days_ago=10)
    parked = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("parked",))
    pending = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("pending",))
    half = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=("delivered", "retrying"))
    unrouted = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), states=())
    now = datetime.now(UTC)

    found = retention.run(engine, config(*NINETY), now, "cli:test")

    assert [(p.tenant, p.form_id, p.days, p.count) for p in found] == [("eastmoor", "missed-bin-collection", 90, 2)]
    for purged in (old, unrouted):
        stored = row(engine, purged.reference)
        assert stored.payload is None and stored.purged_at == now and stored.erased_at is None
        assert links_of(engine, purged.submission_id) == []
        assert messages_of(engine, purged.submission_id) == [("in_progress", None)]
        # the front end's status still answers for the reference, with every delivery
        status = store.status(engine, "eastmoor", purged.reference)
        assert status is not None and status["reference"] == purged.reference
    for kept in (recent, parked, pending, half):
        stored = row(engine, kept.reference)
        assert stored.purged_at is None and SEALER.open(stored.payload)["email"] == "aoife.mccann@example.org"
        assert len(links_of(engine, kept.submission_id)) == 1
        assert messages_of(engine, kept.submission_id) == [("in_progress", "Crew booked for Tuesday")]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries).where(deliveries.c.submission_id == old.submission_id)).scalar_one() == 1
    [entry] = audit_entries(engine, "retention.purge")
    assert entry["actor"] == "cli:test" and entry["tenant"] == "eastmoor" and entry["target"] == "tenant:eastmoor"
    assert entry["detail"] == {"purged": 2, "forms": {"missed-bin-collection": {"purged": 2, "days": 90}}}
    # a second run finds nothing more, and says nothing to the audit log
    assert [p.count for p in retention.run(engine, config(*NINETY), now, "cli:test")] == [0]
    assert len(audit_entries(engine, "retention.purge")) == 1


def test_a_dry_run_counts_and_changes_nothing(engine: Engine) -> None:
    planted = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"))
    found = retention.run(engine, config(*NINETY), datetime.now(UTC), "cli:test", dry_run=True)
    assert [p.count for p in found] == [1]
    assert row(engine, planted.reference).payload is not None and audit_entries(engine) == []


def test_without_a_rule_for_a_form_its_payloads_are_kept(engine: Engine) -> None:
    planted = plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), days_ago=1000)
    assert retention.run(engine, config(RetentionRule(form="report-fly-tipping", days=1)), datetime.now(UTC), "t") == []
    assert row(engine, planted.reference).payload is not None


def _hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_the_retention_command_prints_counts_per_tenant_and_form_and_audits_the_operator(engine: Engine, tmp_path: Path) -> None:
    for _ in range(3):
        plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), days_ago=40)
    plant(engine, SEALER, sample("report-fly-tipping", "uprn-with-reporter"), form_id="report-fly-tipping", days_ago=40)
    plant(engine, SEALER, sample("missed-bin-collection", "general-uprn"), tenant="westvale", days_ago=40)
    configuration = tmp_path / "config"
    configuration.mkdir()
    for name in ("tenants.yaml",):
        (configuration / name).write_text((REPO / "config" / name).read_text())
    (configuration / "retention.yaml").write_text(
        "retention:\n  - {form: '*', days: 90}\n  - {form: missed-bin-collection, tenants: [eastmoor], days: 30}\n"
    )
    env = {"HUB_DATABASE_URL": str(engine.url), "HUB_CONFIG_DIR": str(configuration)}
    later = (datetime.now(UTC) + timedelta(days=55)).isoformat()

    # the command is told the test's time: its process keeps the real clock under `make test-future`
    dry = _hub("retention", "run", "--dry-run", "--now", datetime.now(UTC).isoformat(), env=env)
    assert dry.returncode == 0, dry.stderr
    lines = [line.split() for line in dry.stdout.splitlines()]
    assert ["eastmoor", "missed-bin-collection", "30", "3"] in lines
    assert ["eastmoor", "report-fly-tipping", "90", "0"] in lines and ["westvale", "missed-bin-collection", "90", "0"] in lines
    assert "3 payload(s) would be purged (dry run)" in dry.stdout

    done = _hub("retention", "run", "--now", later, "--actor", "records-officer", env=env)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert ["eastmoor", "missed-bin-collection", "30", "3"] in lines and ["westvale", "missed-bin-collection", "90", "1"] in lines
    assert ["eastmoor", "report-fly-tipping", "90", "1"] in lines and "5 payload(s) purged" in done.stdout
    entries = {e["tenant"]: e for e in audit_entries(engine, "retention.purge")}
    assert entries["eastmoor"]["actor"] == "records-officer" and entries["eastmoor"]["detail"]["purged"] == 4
    assert entries["westvale"]["detail"]["forms"] == {"missed-bin-collection": {"purged": 1, "days": 90}}

    bad = _hub("retention", "run", "--now", "next tuesday", env=env)
    assert bad.returncode == 1 and "--now 'next tuesday' is not an ISO 8601 time" in bad.stderr


def test_the_shipped_rule_keeps_payloads_ninety_days() -> None:
    from hub.config.files import load_config

    shipped = load_config(REPO / "config", {})
    assert retention.rule_for(shipped.retention, "westvale", "missed-bin-collection") == RetentionRule(days=90)


def test_a_worker_purges_on_its_schedule_and_the_front_end_still_follows_the_reference(hub: EmbeddedHub) -> None:
    delivered = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
    assert hub.wait_until_settled(delivered)["deliveries"][0]["state"] == "delivered"
    hub.runtime.config = dataclasses.replace(hub.runtime.config, retention=(RetentionRule(days=0),))
    [job] = [job for job in jobs(hub.runtime) if job.name == "retention"]
    assert job.interval_seconds == hub.runtime.settings.retention_interval_seconds
    job.run()
    assert row(hub.runtime.engine, delivered).payload is None
    status = hub.status(delivered)
    assert status.status_code == 200 and status.json()["deliveries"][0]["state"] == "delivered"
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(attempts)).scalar_one() == 1
    [entry] = hub.admin("GET", "/audit", params={"action": "retention.purge"}).json()
    assert entry["actor"] == "schedule:retention" and entry["detail"]["purged"] == 1
    shown = hub.admin("GET", f"/submissions/{delivered}").json()
    assert shown["payload"] is None and shown["purged_at"] is not None and shown["deliveries"][0]["state"] == "delivered"


def test_a_rule_for_a_form_the_hub_does_not_have_is_reported() -> None:
    rules = (RetentionRule(days=90), RetentionRule(form="missed-bin-colection", days=7))
    assert retention.problems(rules, ["missed-bin-collection", "report-fly-tipping"]) == [
        "retention rule for form 'missed-bin-colection' names no form the hub has (known: missed-bin-collection, report-fly-tipping)"
    ]
    assert retention.problems(rules[:1], ["missed-bin-collection"]) == []
