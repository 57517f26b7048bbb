"""`hub config check` proves config/notifications/notifications.yaml: each bad entry is reported
with the file and the field, one problem a line, as a council's operator would read them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hub.config.checks import check_configuration
from hub.config.settings import Settings
from tests.unit.test_cli import hub

ACK = "5c3d1a8e-0f4b-4d7e-9a51-2f6b8c0e1a01"


def _config(tmp_path: Path, notifications: str) -> tuple[Settings, Path]:
    settings = Settings()
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    path = config / "notifications" / "notifications.yaml"
    path.write_text(notifications, encoding="utf-8")
    return settings.model_copy(update={"config_dir": config}), path


def _entry(form: str = "missed-bin-collection", tenants: str = '["*"]', ack: str = f"email_template: {ACK}") -> str:
    return ("notifications:\n"
            f"  - form: {form}\n"
            f"    tenants: {tenants}\n"
            "    email: /email\n"
            "    acknowledgement:\n"
            f"      {ack}\n"
            "      personalisation: {reference: reference, form_title: form_title}\n")


def _problems(settings: Settings) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return check_configuration(settings, environ)


def test_the_shipped_notifications_pass(tmp_path: Path) -> None:
    settings, path = _config(tmp_path, (Settings().config_dir / "notifications" / "notifications.yaml").read_text(encoding="utf-8"))
    assert not [p for p in _problems(settings) if "notifications" in p]


@pytest.mark.parametrize(("entry", "expected"), [
    (_entry(form="missed-bin-colection"), "notifications.0.form: no form 'missed-bin-colection'"),
    (_entry(tenants='["nowhere"]'), "notifications.0.tenants: no tenant 'nowhere'"),
    (_entry(ack="email_template: not-a-uuid"),
     "notifications.0.acknowledgement.email_template: 'not-a-uuid' is not a Notify template id"),
    (_entry(ack="sms_tempalte: " + ACK), "notifications.0.acknowledgement.sms_tempalte: Extra inputs are not permitted"),
    (_entry(ack="email_template: null"), "notifications.0.acknowledgement: names no template"),
    (_entry(ack=f"sms_template: {ACK}"), "notifications.0.phone: acknowledgement has an sms_template but the entry names no phone field"),
])
def test_a_bad_entry_is_reported_with_its_file_and_field(tmp_path: Path, entry: str, expected: str) -> None:
    settings, path = _config(tmp_path, entry)
    problems = _problems(settings)
    assert any(p.startswith(f"{path}: {expected}") for p in problems), problems


def test_every_problem_is_its_own_line(tmp_path: Path) -> None:
    settings, path = _config(tmp_path, _entry(form="no-such-form", tenants='["nowhere"]'))
    problems = [p for p in _problems(settings) if str(path) in p]
    assert problems == [f"{path}: notifications.0.form: no form 'no-such-form'", f"{path}: notifications.0.tenants: no tenant 'nowhere'"]


def test_config_check_fails_and_names_the_file_and_field(tmp_path: Path) -> None:
    settings, path = _config(tmp_path, _entry(ack="email_template: null"))
    result = hub("config", "check", env={"HUB_CONFIG_DIR": str(settings.config_dir)})
    assert result.returncode == 1, result.stdout
    assert f"{path}: notifications.0.acknowledgement: names no template" in result.stderr
    assert "1 problem(s) found" in result.stderr
