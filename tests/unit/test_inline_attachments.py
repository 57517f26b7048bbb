"""A report and its photos in one multipart request (hub/attachments/inline.py), as a portal sends
it with `curl -F`: the photos are stored as uploads are (type from the bytes, EXIF stripped), the
report is linked to them, and every bad part is a problem naming it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from hub.attachments.storage import FileStore
from hub.config.settings import Settings
from hub.store.tables import attachments, submission_attachments
from tests.support.embedded import EmbeddedHub
from tests.unit.test_attachments import jpeg_with_gps
from tests.unit.test_attachments_api import png, rows
from tests.unit.test_intake_api import assert_problem

SAMPLE = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())


@pytest.fixture
def blobs(hub: EmbeddedHub, tmp_path: Path) -> FileStore:
    found = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
    hub.app.state.attachment_store = found
    return found


def send(hub: EmbeddedHub, answers: Any, files: list[tuple[str, tuple[str, bytes, str]]], form: str = "report-fly-tipping",
         **headers: str) -> httpx.Response:
    parts = [("submission", (None, json.dumps(answers).encode(), "application/json")), *files]
    return hub.client.post(f"/v1/forms/{form}/submissions", files=parts, headers={"Authorization": f"Bearer {hub.key}", **headers})


def test_a_report_and_its_photos_in_one_request_are_stored_cleaned_and_linked(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = send(hub, SAMPLE, [("photo_uploads", ("tip.jpg", jpeg_with_gps(), "image/jpeg")),
                                ("photo_uploads", ("bags.png", png(), "application/octet-stream"))])
    assert answer.status_code == 202, answer.text
    with hub.runtime.engine.connect() as conn:
        linked = conn.execute(select(submission_attachments.c.attachment_id)).scalars().all()
        stored = {r.id: r for r in conn.execute(select(attachments)).all()}
    assert sorted(linked) == sorted(stored) and len(stored) == 2
    # the type from the bytes, not the part's header; the photo without its EXIF
    assert sorted(r.media_type for r in stored.values()) == ["image/jpeg", "image/png"]
    [jpeg] = [r for r in stored.values() if r.media_type == "image/jpeg"]
    assert len(Image.open(io.BytesIO(b"".join(blobs.open(jpeg.sha256)))).getexif()) == 0
    status = hub.status(answer.json()["reference"])
    assert status.status_code == 200


def test_the_same_request_again_with_another_boundary_is_the_same_submission(hub: EmbeddedHub, blobs: FileStore) -> None:
    photo = [("photo_uploads", ("tip.jpg", jpeg_with_gps(), "image/jpeg"))]
    first = send(hub, SAMPLE, photo, **{"Idempotency-Key": "inline-1"})
    again = send(hub, SAMPLE, photo, **{"Idempotency-Key": "inline-1"})
    assert first.status_code == 202 and again.status_code in (200, 202), again.text
    assert again.json()["reference"] == first.json()["reference"]
    other = send(hub, SAMPLE, [("photo_uploads", ("bags.png", png(), "image/png"))], **{"Idempotency-Key": "inline-1"})
    assert_problem(other, 409, "idempotency-conflict")


def test_every_bad_part_is_named(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = hub.client.post(
        "/v1/forms/report-fly-tipping/submissions",
        files=[("receipt", ("r.png", png(), "image/png")), ("photo_uploads", ("empty.jpg", b"", "image/jpeg"))],
        headers={"Authorization": f"Bearer {hub.key}"},
    )
    problem = assert_problem(answer, 422, "validation-failed")
    details = {e["pointer"]: e["detail"] for e in problem["errors"]}
    assert "no attachment field 'receipt'" in details["/parts/0"] and "photo_uploads" in details["/parts/0"]
    assert details["/files/empty.jpg"] == "the file is empty"
    assert "'submission' must hold the answers" in details["/parts"]
    assert rows(hub) == 0


def test_a_file_of_a_type_the_field_refuses_is_a_422_naming_the_file_and_nothing_is_submitted(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = send(hub, SAMPLE, [("photo_uploads", ("tip.jpg", b"%PDF-1.4\n" + b"x" * 200, "image/jpeg"))])
    problem = assert_problem(answer, 422, "validation-failed")
    assert "tip.jpg" in problem["detail"] and problem["errors"][0]["pointer"] == "/files/tip.jpg"
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(submission_attachments)).all() == []


def test_too_many_files_and_bad_answers_are_named_as_for_uploaded_ids(hub: EmbeddedHub, blobs: FileStore) -> None:
    four = [("photo_uploads", (f"p{i}.png", png(), "image/png")) for i in range(4)]
    problem = assert_problem(send(hub, SAMPLE, four), 422, "validation-failed")
    assert any(e["pointer"] == "/photo_uploads" for e in problem["errors"]), problem
    broken = hub.client.post("/v1/forms/report-fly-tipping/submissions",
                             files=[("submission", (None, b"{not json", "application/json"))],
                             headers={"Authorization": f"Bearer {hub.key}"})
    assert_problem(broken, 400, "malformed-json")


def test_over_the_inline_bound_is_a_413_and_a_form_without_files_takes_json_only(
    hub: EmbeddedHub, blobs: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.runtime.settings, "attachment_inline_max_bytes", 64 * 1024)
    big = send(hub, SAMPLE, [("photo_uploads", ("big.png", b"\x89PNG" + b"\x00" * (100 * 1024), "image/png"))])
    assert_problem(big, 413, "body-too-large")
    assert rows(hub) == 0
    general = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
    plain = send(hub, general, [], form="missed-bin-collection")
    problem = assert_problem(plain, 415, "unsupported-media-type")
    assert "application/json" in problem["detail"]
