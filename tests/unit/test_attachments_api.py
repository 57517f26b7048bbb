"""POST /v1/attachments and GET /v1/attachments/{id} as a front end sees them, on the embedded hub."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from hub.attachments.storage import FileStore
from hub.store import clients
from hub.store.tables import attachments
from tests.support.embedded import EmbeddedHub
from tests.unit.test_attachments import jpeg_with_gps
from tests.unit.test_intake_api import assert_problem


@pytest.fixture
def blobs(hub: EmbeddedHub, tmp_path: Path) -> FileStore:
    found = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
    hub.app.state.attachment_store = found
    return found


def upload(hub: EmbeddedHub, content: Any, key: str | None = None, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/octet-stream", **headers}
    if key != "":
        sent["Authorization"] = f"Bearer {key or hub.key}"
    return hub.client.post("/v1/attachments", content=content, headers=sent)


def stored_files(blobs: FileStore) -> list[Path]:
    return [p for p in blobs.root.rglob("*") if p.is_file()] if blobs.root.exists() else []


def rows(hub: EmbeddedHub) -> int:
    with hub.runtime.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(attachments)).scalar_one())


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 90, 200)).save(out, format="PNG")
    return out.getvalue()


def test_a_photo_is_stored_without_its_exif_and_its_metadata_can_be_read(hub: EmbeddedHub, blobs: FileStore) -> None:
    original = jpeg_with_gps()
    assert len(Image.open(io.BytesIO(original)).getexif()) > 0
    answer = upload(hub, original, **{"X-Filename": "pothole.jpg"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["id"].startswith("att_") and len(body["id"]) >= 24
    assert body["media_type"] == "image/jpeg" and body["scan"] == "unscanned"  # no clamd configured here
    stored = b"".join(blobs.open(body["sha256"]))
    assert len(stored) == body["size"] and stored != original
    assert len(Image.open(io.BytesIO(stored)).getexif()) == 0
    # kept encrypted: the file on disk is neither the upload nor the cleaned image
    [on_disk] = stored_files(blobs)
    assert stored not in on_disk.read_bytes() and b"PhoneMaker" not in on_disk.read_bytes()
    again = hub.client.get(f"/v1/attachments/{body['id']}", headers={"Authorization": f"Bearer {hub.key}"})
    assert again.status_code == 200, again.text
    assert again.json() == body


def test_two_uploads_get_different_ids(hub: EmbeddedHub, blobs: FileStore) -> None:
    ids = {upload(hub, png(), **{"X-Filename": "plan.png"}).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_another_tenants_client_does_not_find_the_attachment(hub: EmbeddedHub, blobs: FileStore) -> None:
    made = upload(hub, jpeg_with_gps(), **{"X-Filename": "pothole.jpg"}).json()
    _, westvale_key = clients.create(hub.runtime.engine, clients.NewClient("wv-attachments-app", "westvale"), "cli:westvale-ict")
    other = hub.client.get(f"/v1/attachments/{made['id']}", headers={"Authorization": f"Bearer {westvale_key}"})
    problem = assert_problem(other, 404, "not-found")
    assert made["sha256"] not in other.text and "eastmoor" not in problem["detail"]
    unknown = hub.client.get("/v1/attachments/att_" + "x" * 24, headers={"Authorization": f"Bearer {hub.key}"})
    assert_problem(unknown, 404, "not-found")


def test_the_type_comes_from_the_bytes_not_the_name_or_header(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = upload(hub, png(), **{"Content-Disposition": 'attachment; filename="planning-form.pdf"', "Content-Type": "application/pdf"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["media_type"] == "image/png"


def test_a_type_the_hub_does_not_take_is_refused_naming_the_file(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = hub.client.post("/v1/attachments", params={"filename": "run-me.exe"}, content=b"MZ\x90\x00" + b"\x00" * 200,
                             headers={"Authorization": f"Bearer {hub.key}"})
    problem = assert_problem(answer, 422, "validation-failed")
    assert "run-me.exe" in problem["detail"] and problem["errors"][0]["pointer"] == "/files/run-me.exe"
    assert stored_files(blobs) == [] and rows(hub) == 0


def test_an_empty_file_is_refused_naming_it(hub: EmbeddedHub, blobs: FileStore) -> None:
    problem = assert_problem(upload(hub, b"", **{"X-Filename": "empty.pdf"}), 422, "validation-failed")
    assert "empty.pdf" in problem["detail"] and "empty" in problem["errors"][0]["detail"]
    assert stored_files(blobs) == [] and rows(hub) == 0


def test_a_truncated_image_is_refused_naming_it(hub: EmbeddedHub, blobs: FileStore) -> None:
    cut = jpeg_with_gps()[:300]
    problem = assert_problem(upload(hub, cut, **{"X-Filename": "cut.jpg"}), 422, "validation-failed")
    assert "cut.jpg" in problem["detail"]
    assert stored_files(blobs) == [] and rows(hub) == 0


def test_a_streamed_body_over_the_bound_is_refused_and_nothing_is_kept(
    hub: EmbeddedHub, blobs: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.runtime.settings, "attachment_max_bytes", 100 * 1024)
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b"%PDF-1.4\n"
        for _ in range(4):
            sent.append(64 * 1024)
            yield b"0" * 64 * 1024

    problem = assert_problem(upload(hub, chunks(), **{"X-Filename": "huge.pdf"}), 413, "body-too-large")
    assert "huge.pdf" in problem["detail"] and problem["limit"] == 100 * 1024
    assert stored_files(blobs) == [] and rows(hub) == 0
    # a declared length over the bound is refused before any of the body is read
    declared = upload(hub, b"%PDF-1.4\n" + b"0" * (101 * 1024), **{"X-Filename": "huge.pdf"})
    assert_problem(declared, 413, "body-too-large")
    assert stored_files(blobs) == []


def test_no_key_is_unauthorised_and_nothing_is_kept(hub: EmbeddedHub, blobs: FileStore) -> None:
    answer = upload(hub, png(), key="", **{"X-Filename": "plan.png"})
    assert_problem(answer, 401, "unauthorized")
    assert stored_files(blobs) == [] and rows(hub) == 0
    assert_problem(hub.client.get("/v1/attachments/att_" + "x" * 24), 401, "unauthorized")


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.png", "c:\\x.png", "..", "bad\nname.png", " lead.png"])
def test_a_file_name_that_is_a_path_is_refused(hub: EmbeddedHub, blobs: FileStore, name: str) -> None:
    answer = hub.client.post("/v1/attachments", params={"filename": name}, content=png(), headers={"Authorization": f"Bearer {hub.key}"})
    problem = assert_problem(answer, 422, "validation-failed")
    assert problem["errors"][0]["pointer"] == "/query/filename"
    assert stored_files(blobs) == [] and rows(hub) == 0


def test_a_file_without_a_name_is_refused(hub: EmbeddedHub, blobs: FileStore) -> None:
    problem = assert_problem(upload(hub, png()), 422, "validation-failed")
    assert problem["errors"][0]["pointer"] == "/headers/X-Filename"


def test_a_report_naming_an_unknown_photo_id_is_a_422_naming_the_field(hub: EmbeddedHub, blobs: FileStore) -> None:
    import json

    from hub.config.settings import Settings

    sample = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())
    response = hub.post("report-fly-tipping", {**sample, "photo_uploads": ["att_" + "x" * 24]})
    assert response.status_code == 422, response.text
    assert [e["pointer"] for e in response.json()["errors"]] == ["/photo_uploads/0"]


def test_a_report_naming_an_uploaded_photo_is_accepted_and_linked(hub: EmbeddedHub, blobs: FileStore) -> None:
    import json

    from hub.config.settings import Settings
    from hub.store.tables import submission_attachments

    photo = upload(hub, jpeg_with_gps(), **{"X-Filename": "tip.jpg"})
    assert photo.status_code == 201, photo.text
    sample = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())
    response = hub.post("report-fly-tipping", {**sample, "photo_uploads": [photo.json()["id"]]})
    assert response.status_code == 202, response.text
    with hub.runtime.engine.connect() as conn:
        linked = conn.execute(select(submission_attachments.c.attachment_id)).scalars().all()
    assert linked == [photo.json()["id"]]


def test_once_a_report_is_purged_its_photo_rows_and_stored_bytes_are_gone(hub: EmbeddedHub, blobs: FileStore) -> None:
    import json
    from datetime import UTC, datetime

    from sqlalchemy import update

    from hub.config.settings import Settings
    from hub.privacy.retention import forget_attachments
    from hub.store.tables import submissions

    photo = upload(hub, jpeg_with_gps(), **{"X-Filename": "tip.jpg"}).json()
    sample = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())
    assert hub.post("report-fly-tipping", {**sample, "photo_uploads": [photo["id"]]}).status_code == 202
    assert blobs.exists(photo["sha256"]) and forget_attachments(hub.runtime.engine, blobs) == 0
    with hub.runtime.engine.begin() as conn:  # as retention's purge leaves it
        conn.execute(update(submissions).values(payload=None, purged_at=datetime.now(UTC)))
    assert forget_attachments(hub.runtime.engine, blobs) == 1
    assert not blobs.exists(photo["sha256"]) and stored_files(blobs) == [] and rows(hub) == 0
