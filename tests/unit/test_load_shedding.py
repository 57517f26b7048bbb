"""Past the intake's bound the hub sheds load: a 503 problem with Retry-After, nothing stored,
and every submission it did take delivered (issue 17: bounded queue, not unbounded latency)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.config.settings import Settings
from hub.store import submissions as store
from hub.store.tables import submissions
from tests.support.embedded import EmbeddedHub

SCHEMAS = Settings().schemas_dir
PAYLOAD = json.loads((SCHEMAS / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())


def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_the_setting_bounds_each_api_process_intake(hub: EmbeddedHub) -> None:
    assert Settings().intake_max_in_flight == 256
    assert hub.app.state.intake.max_in_flight == hub.runtime.settings.intake_max_in_flight


def test_past_the_bound_a_submission_is_refused_with_retry_after_and_nothing_is_lost(
    hub: EmbeddedHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = hub.app.state.intake
    intake.max_in_flight = 3
    batcher = intake.batcher
    writing, release = threading.Event(), threading.Event()
    real = store.accept_many

    def slow_database(engine: Any, batch: Any) -> Any:
        writing.set()
        release.wait(10)
        return real(engine, batch)

    monkeypatch.setattr(store, "accept_many", slow_database)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(hub.post, "missed-bin-collection", PAYLOAD, headers={"Idempotency-Key": "k-1"})
        _until(writing.is_set)  # the first is in its transaction; the next two wait for theirs: 3 in hand
        waiting = [pool.submit(hub.post, "missed-bin-collection", PAYLOAD, headers={"Idempotency-Key": f"k-{i}"})
                   for i in (2, 3)]
        _until(lambda: len(batcher._waiting) == 2)
        refused = hub.post("missed-bin-collection", PAYLOAD, headers={"Idempotency-Key": "k-4"})
        release.set()
        answers = [first.result(10), *(f.result(10) for f in waiting)]

    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "/problems/service-unavailable" and "nothing was stored" in problem["detail"]
    assert [a.status_code for a in answers] == [202, 202, 202]
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 3
    for answer in answers:
        assert hub.wait_until_settled(answer.json()["reference"])["deliveries"][0]["state"] == "delivered"
    # sent again once the hub has room, the refused one is taken
    again = hub.post("missed-bin-collection", PAYLOAD, headers={"Idempotency-Key": "k-4"})
    assert again.status_code == 202
    metrics = httpx.get(f"{hub.url}/metrics").text
    assert "hub_intake_shed_total 1.0" in metrics


def test_a_full_intake_sheds_before_looking_at_the_key_or_the_body(hub: EmbeddedHub) -> None:
    intake = hub.app.state.intake
    intake.in_flight = intake.max_in_flight  # as if that many were being taken in
    try:
        # the cheapest refusal: not even the (wrong) key is checked while the hub is full
        refused = httpx.post(f"{hub.url}/v1/forms/missed-bin-collection/submissions", content=b"{not json",
                             headers={"Authorization": "Bearer not-a-key", "Content-Type": "application/json"})
    finally:
        intake.in_flight = 0
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["type"] == "/problems/service-unavailable"
    later = httpx.post(f"{hub.url}/v1/forms/missed-bin-collection/submissions", content=b"{not json",
                       headers={"Authorization": "Bearer not-a-key", "Content-Type": "application/json"})
    assert later.status_code == 401
