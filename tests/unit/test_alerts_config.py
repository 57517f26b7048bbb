"""A tenant's `alerts` as ICT staff configure them: a mistake is refused naming the field, with its
file and line; `hub digest` sends once per day to a real mail sink and prints without sending."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.config.files import load_config
from hub.config.settings import Settings
from hub.delivery.alerts import Alerts
from hub.errors import ConfigError
from hub.logs import personal_data
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from simulators.mail import MailSink

ROOT = Path(__file__).resolve().parents[2]
MARKER = "    reference_prefix: EDC\n"


def config_with(tmp_path: Path, alerts: str) -> Path:
    target = tmp_path / "config"
    shutil.copytree(Settings().config_dir, target)
    tenants = target / "tenants.yaml"
    tenants.write_text(tenants.read_text(encoding="utf-8").replace(MARKER, MARKER + f"    alerts: {alerts}\n", 1), encoding="utf-8")
    return target


def problems(directory: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    return str(caught.value)


def test_alerts_through_a_connector_that_is_not_an_email_one_are_refused_naming_the_field(tmp_path: Path) -> None:
    text = problems(config_with(tmp_path, "{to: [ict@eastmoor.example.org], mail_connector: crm}"))
    assert "tenants.yaml:" in text and "alerts.mail_connector" in text and "'crm'" in text
    assert "feedback-email" in text  # the e-mail connectors it could have named


def test_a_recipient_that_is_not_an_address_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = problems(config_with(tmp_path, "{to: [not-an-address], mail_connector: feedback-email}"))
    assert "alerts.to" in text and "'not-an-address' is not an e-mail address" in text


def test_an_unknown_connector_is_named(tmp_path: Path) -> None:
    text = problems(config_with(tmp_path, "{to: [ict@eastmoor.example.org], mail_connector: feedbak-email}"))
    assert "alerts.mail_connector names unknown connector 'feedbak-email'" in text


def test_alerts_without_recipients_are_refused(tmp_path: Path) -> None:
    text = problems(config_with(tmp_path, "{to: [], mail_connector: feedback-email}"))
    assert "alerts.to" in text


def hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **env}, cwd=ROOT)


def test_hub_digest_prints_then_sends_yesterdays_digest_once(tmp_path: Path) -> None:
    sink = MailSink().start()
    try:
        config = config_with(tmp_path, "{to: [ict@eastmoor.example.org], mail_connector: feedback-email}")
        env = {"HUB_CONFIG_DIR": str(config), "HUB_DATA_DIR": str(tmp_path / "var"), "HUB_DEMO_API_KEY": "k" * 20,
               "SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port)}
        assert hub("migrate", env=env).returncode == 0
        printed = hub("digest", "--print", env=env)
        assert printed.returncode == 0, printed.stderr
        assert "Daily digest for" in printed.stdout and "Submissions received: 0" in printed.stdout
        assert sink.state.messages() == []
        first, second = hub("digest", env=env), hub("digest", env=env)
        bad = hub("digest", "--tenant", "nowhere", env=env)
    finally:
        sink.stop()
    assert first.returncode == 0, first.stderr
    assert "eastmoor:" in first.stdout and first.stdout.strip().endswith("sent")
    assert second.stdout.strip().endswith("already-sent")
    [mail] = sink.state.messages()
    assert mail.rcpt_tos == ["ict@eastmoor.example.org"] and "Daily digest for" in mail.subject
    assert bad.returncode == 1 and "unknown tenant(s): nowhere" in bad.stderr


def test_an_alert_hook_never_raises_even_when_the_database_is_gone(tmp_path: Path) -> None:
    config = config_with(tmp_path, "{to: [ict@eastmoor.example.org], mail_connector: feedback-email}")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", broker_url="memory://", config_dir=config)
    runtime = Runtime.build(settings, {"HUB_DEMO_API_KEY": "k" * 20})
    upgrade(runtime.engine)
    alerts = Alerts(runtime)
    (tmp_path / "hub.db").unlink()
    runtime.engine.dispose()
    shutil.rmtree(tmp_path / "config")  # nothing left to read either
    alerts.parked("eastmoor", "crm", "HTTP 400")  # returns at once: the thread logs the failure
    alerts.circuit_opened("crm", 5, 30)
    alerts.wait(5)
    runtime.close()


def test_an_alert_mail_never_quotes_the_residents_personal_data(tmp_path: Path) -> None:
    sink = MailSink().start()
    config = config_with(tmp_path, "{to: [ict@eastmoor.example.org], mail_connector: feedback-email}")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", broker_url="memory://", config_dir=config)
    runtime = Runtime.build(settings, {"HUB_DEMO_API_KEY": "k" * 20, "SMTP_HOST": sink.host, "SMTP_PORT": str(sink.port)})
    try:
        upgrade(runtime.engine)
        alerts = Alerts(runtime)
        # the sending thread knows the submission's x-pii values; a back office quoted one back
        with personal_data(["Siân Ŵyn", "07700 900123"]):
            alerts.parked("eastmoor", "crm", "crm refused: contact Siân Ŵyn on 07700 900123 is not unique")
        alerts.wait(10)
    finally:
        runtime.close()
        sink.stop()
    [mail] = sink.state.messages()
    body = mail.message.get_content()
    assert "crm refused: contact" in body
    assert "Siân" not in body and "07700 900123" not in body and "Siân" not in mail.subject


def test_a_worker_runs_the_alerts_and_digest_jobs_only_when_a_tenant_has_alerts(tmp_path: Path) -> None:
    from hub.background import jobs

    names = []
    for folder, config in (("with", config_with(tmp_path / "with", "{to: [ict@eastmoor.example.org], mail_connector: feedback-email}")),
                           ("without", Settings().config_dir)):
        settings = Settings(database_url=f"sqlite:///{tmp_path / folder}.db", broker_url="memory://", config_dir=config)
        runtime = Runtime.build(settings, {"HUB_DEMO_API_KEY": "k" * 20})
        try:
            names.append({job.name: job.interval_seconds for job in jobs(runtime)})
        finally:
            runtime.close()
    with_alerts, without = names
    assert with_alerts["alerts"] == Settings().alert_flush_seconds and with_alerts["digest"] == Settings().digest_check_seconds
    assert "alerts" not in without and "digest" not in without
