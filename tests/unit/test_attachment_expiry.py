"""Uploads no submission ever names (uploaded then abandoned, or sent inline with a report the hub
refused) do not stay for ever: the retention run deletes them, row and stored file, once they are
older than HUB_ATTACHMENT_UNLINKED_MAX_AGE_HOURS; the files of a refused inline report go at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from hub.attachments.storage import FileStore
from hub.config.settings import Settings
from hub.privacy import retention
from hub.store.tables import attachments
from tests.support.embedded import EmbeddedHub
from tests.unit.test_attachments import jpeg_with_gps
from tests.unit.test_attachments_api import png, rows, stored_files, upload
from tests.unit.test_inline_attachments import send
from tests.unit.test_intake_api import assert_problem

SAMPLE = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())


@pytest.fixture
def blobs(hub: EmbeddedHub, tmp_path: Path) -> FileStore:
    found = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
    hub.app.state.attachment_store = found
    hub.runtime.use_attachment_store(found)
    return found


def uploaded(hub: EmbeddedHub, data: bytes, name: str = "tip.png") -> dict[str, Any]:
    answer = upload(hub, data, **{"X-Filename": name})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def age(hub: EmbeddedHub, attachment_id: str, hours: float) -> None:
    """Makes the upload look `hours` old (the clock is the real one; the row is moved back)."""
    with hub.runtime.engine.begin() as conn:
        conn.execute(update(attachments).where(attachments.c.id == attachment_id)
                     .values(created_at=datetime.now(UTC) - timedelta(hours=hours)))


def ids(hub: EmbeddedHub) -> set[str]:
    with hub.runtime.engine.connect() as conn:
        return set(conn.execute(select(attachments.c.id)).scalars())


def test_the_default_maximum_age_of_an_unlinked_upload_is_a_day() -> None:
    assert Settings().attachment_unlinked_max_age_hours == 24


def test_an_abandoned_upload_is_deleted_by_the_scheduled_run_and_a_submission_naming_it_gets_a_422(
        hub: EmbeddedHub, blobs: FileStore) -> None:
    limit = hub.runtime.settings.attachment_unlinked_max_age_hours
    abandoned = uploaded(hub, png())
    recent = uploaded(hub, jpeg_with_gps(), "recent.jpg")
    used = uploaded(hub, jpeg_with_gps(), "used.jpg")  # the same cleaned bytes as `recent`
    assert hub.post("report-fly-tipping", {**SAMPLE, "photo_uploads": [used["id"]]}).status_code == 202
    age(hub, abandoned["id"], limit + 1)
    age(hub, used["id"], limit * 10)  # old, but a submission names it
    age(hub, recent["id"], limit - 1)

    retention.scheduled(hub.runtime)

    assert ids(hub) == {recent["id"], used["id"]}
    assert not blobs.exists(abandoned["sha256"]) and blobs.exists(used["sha256"])
    named = hub.post("report-fly-tipping", {**SAMPLE, "photo_uploads": [abandoned["id"]]})
    problem = assert_problem(named, 422, "validation-failed")
    assert problem["errors"] == [{"pointer": "/photo_uploads/0", "detail": f"there is no attachment {abandoned['id']} for this client: "
                                                                        "upload it first (POST /v1/attachments)"}]
    gone = hub.client.get(f"/v1/attachments/{abandoned['id']}", headers={"Authorization": f"Bearer {hub.key}"})
    assert_problem(gone, 404, "not-found")


def test_an_expired_upload_whose_bytes_another_upload_shares_leaves_the_stored_file(hub: EmbeddedHub, blobs: FileStore) -> None:
    old, young = uploaded(hub, png()), uploaded(hub, png())
    assert old["sha256"] == young["sha256"]
    age(hub, old["id"], 48)
    found = retention.expire_unlinked(hub.runtime.engine, blobs, datetime.now(UTC), timedelta(hours=24))
    assert (found.uploads, found.blobs) == (1, 0)
    assert ids(hub) == {young["id"]} and blobs.exists(young["sha256"])
    age(hub, young["id"], 48)
    found = retention.expire_unlinked(hub.runtime.engine, blobs, datetime.now(UTC), timedelta(hours=24))
    assert (found.uploads, found.blobs) == (1, 1) and stored_files(blobs) == [] and rows(hub) == 0


def test_a_dry_run_counts_the_expired_uploads_and_deletes_nothing(hub: EmbeddedHub, blobs: FileStore) -> None:
    made = uploaded(hub, png())
    age(hub, made["id"], 30)
    found = retention.expire_unlinked(hub.runtime.engine, blobs, datetime.now(UTC), timedelta(hours=24), dry_run=True)
    assert found.uploads == 1 and ids(hub) == {made["id"]} and blobs.exists(made["sha256"])


def test_the_maximum_age_is_a_setting(hub: EmbeddedHub, blobs: FileStore) -> None:
    made = uploaded(hub, png())
    age(hub, made["id"], 3)
    hub.runtime.settings = hub.runtime.settings.model_copy(update={"attachment_unlinked_max_age_hours": 4})
    retention.scheduled(hub.runtime)
    assert ids(hub) == {made["id"]}
    hub.runtime.settings = hub.runtime.settings.model_copy(update={"attachment_unlinked_max_age_hours": 2})
    retention.scheduled(hub.runtime)
    assert ids(hub) == set() and not blobs.exists(made["sha256"])


def test_the_files_of_an_inline_report_the_schema_refuses_are_deleted_at_once(hub: EmbeddedHub, blobs: FileStore) -> None:
    kept = uploaded(hub, png())  # the same bytes, uploaded earlier by another report's portal
    refused = send(hub, {**SAMPLE, "size": "a mountain"}, [("photo_uploads", ("tip.png", png(), "image/png")),
                                                          ("photo_uploads", ("tip.jpg", jpeg_with_gps(), "image/jpeg"))])
    problem = assert_problem(refused, 422, "validation-failed")
    assert "/size" in [e["pointer"] for e in problem["errors"]]
    assert ids(hub) == {kept["id"]} and blobs.exists(kept["sha256"]) and len(stored_files(blobs)) == 1


def test_the_files_of_an_inline_report_whose_attachments_are_refused_are_deleted_at_once(hub: EmbeddedHub, blobs: FileStore) -> None:
    refused = send(hub, SAMPLE, [("photo_uploads", ("tip.png", png(), "image/png"))] * 4)  # the field takes 3
    problem = assert_problem(refused, 422, "validation-failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/photo_uploads"]
    assert rows(hub) == 0 and stored_files(blobs) == []


def test_a_repeated_inline_report_keeps_the_first_ones_files_only(hub: EmbeddedHub, blobs: FileStore) -> None:
    photo = [("photo_uploads", ("tip.jpg", jpeg_with_gps(), "image/jpeg"))]
    first = send(hub, SAMPLE, photo, **{"Idempotency-Key": "expiry-1"})
    assert first.status_code == 202, first.text
    before = ids(hub)
    again = send(hub, SAMPLE, photo, **{"Idempotency-Key": "expiry-1"})
    assert again.json()["reference"] == first.json()["reference"]
    assert ids(hub) == before and len(before) == 1 and len(stored_files(blobs)) == 1
