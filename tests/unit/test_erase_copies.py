"""The quoted forms an erasure and the worker blank, and a replay's audit entry that copies no
back-office text (the audit log is append-only, so no erasure could blank it there)."""

from __future__ import annotations

import json
from pathlib import Path

from hub.privacy.copies import quoted_forms
from hub.store.replay import audit_entries
from simulators.control import FailurePlan
from tests.support.embedded import embedded_hub
from tests.support.privacy import sample


def test_quoted_forms_cover_the_ways_a_json_error_quotes_an_answer() -> None:
    answer = 'Zoë O\'Brien "Jo" 😀'
    forms = quoted_forms([answer, "Al"])
    for quoted in (
        answer,
        json.dumps(answer)[1:-1],
        json.dumps(answer, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(answer)[1:-1])[1:-1],
        json.dumps(answer)[1:-1].replace("\\u00eb", "\\u00EB").replace("\\ud83d\\ude00", "\\uD83D\\uDE00"),
    ):
        assert quoted in forms, quoted
    # too short to blank without ruining the text; longest first, so one holding another goes whole
    assert "Al" not in forms and forms == sorted(forms, key=len, reverse=True)


def test_a_replay_is_audited_without_the_back_offices_error_text(tmp_path: Path) -> None:
    with embedded_hub(tmp_path) as hub:
        hub.crm.arm(FailurePlan(count=1, status=400))
        reference = hub.post("missed-bin-collection", sample("missed-bin-collection", "general-uprn")).json()["reference"]
        hub.wait_until_settled(reference)
        [parked] = hub.admin("GET", "/deliveries").json()
        assert hub.admin("POST", f"/deliveries/{parked['delivery_id']}/replay").status_code == 200
        [entry] = audit_entries(hub.runtime.engine, "replay")
    assert entry["detail"] == {"reference": reference, "connector": "crm", "attempts": 1}
