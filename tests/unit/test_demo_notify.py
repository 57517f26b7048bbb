"""`hub demo` starts the GOV.UK Notify simulator: each resident's submission of a form with an
acknowledgement (config/notifications/notifications.yaml) gets one, and the demo says where to read them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_cli import hub


def test_demo_once_sends_each_resident_an_acknowledgement_through_the_notify_simulator(tmp_path: Path) -> None:
    result = hub("demo", "--once", "--port", "0", "--timeout", "20", env={"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"})
    assert result.returncode == 0, result.stdout + result.stderr
    references = re.findall(r"^missed-bin-collection\s+\S+\s+([A-Z]{3}-\w{10})\s", result.stdout, re.M)
    assert references, result.stdout
    line = re.search(r"^Messages to residents \(GOV\.UK Notify simulator, (http://127\.0\.0\.1:\d+)\): (\d+) sent; "
                     r"read them at (\S+)$", result.stdout, re.M)
    assert line, result.stdout
    assert line.group(3) == f"{line.group(1)}/_control/notifications"
    # one acknowledgement per missed-bin submission, carrying its reference in the template's subject
    for reference in set(references):
        assert re.search(rf"^  email for {reference}/acknowledgement: Your reference {reference}$", result.stdout, re.M), reference
    assert int(line.group(2)) >= len(set(references))


def test_demo_leaves_a_configured_notify_service_alone(tmp_path: Path) -> None:
    # a council's own key: the demo starts no simulator and says nothing about one
    result = hub("demo", "--once", "--port", "0", "--timeout", "5", env={
        "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "HUB_NOTIFY_API_KEY": "hub-00000000-0000-0000-0000-000000000000-00000000-0000-0000-0000-000000000000",
        "HUB_NOTIFY_BASE_URL": "http://127.0.0.1:9",
    })
    assert "Messages to residents" not in result.stdout, result.stdout
