"""POST /v1/attachments with a real clamd: a file matching the test signature is quarantined
(422, nothing kept), a clean one is `clean`, and with clamd stopped a file is `unscanned`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from hub.attachments.storage import FileStore
from hub.store.tables import attachments
from tests.support.clamd import ClamdServer
from tests.support.embedded import EmbeddedHub, embedded_hub

pytestmark = pytest.mark.integration

INFECTED_PDF = b"%PDF-1.4\n" + b"this file stands in for malware in the hub's upload tests\n" * 3


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    server = ClamdServer(INFECTED_PDF, name="Hub.Test.Upload")
    yield server
    server.close()


@pytest.fixture
def scanned_hub(tmp_path: Path, clamd: ClamdServer) -> Iterator[tuple[EmbeddedHub, FileStore]]:
    with embedded_hub(tmp_path) as hub:
        blobs = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
        hub.app.state.attachment_store = blobs
        hub.app.state.attachment_scanner = clamd.client()
        yield hub, blobs


def upload(hub: EmbeddedHub, content: bytes, name: str) -> httpx.Response:
    return hub.client.post("/v1/attachments", content=content, headers={"Authorization": f"Bearer {hub.key}", "X-Filename": name})


def kept(hub: EmbeddedHub, blobs: FileStore) -> tuple[int, int]:
    with hub.runtime.engine.connect() as conn:
        count = int(conn.execute(select(func.count()).select_from(attachments)).scalar_one())
    files = len([p for p in blobs.root.rglob("*") if p.is_file()]) if blobs.root.exists() else 0
    return count, files


def test_a_file_matching_the_signature_is_quarantined_and_not_kept(scanned_hub: tuple[EmbeddedHub, FileStore]) -> None:
    hub, blobs = scanned_hub
    answer = upload(hub, INFECTED_PDF, "council-tax-proof.pdf")
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert "council-tax-proof.pdf" in problem["detail"] and "quarantined" in problem["detail"]
    assert problem["errors"][0]["pointer"] == "/files/council-tax-proof.pdf"
    assert kept(hub, blobs) == (0, 0)


def test_a_clean_file_is_marked_clean(scanned_hub: tuple[EmbeddedHub, FileStore]) -> None:
    hub, blobs = scanned_hub
    answer = upload(hub, b"%PDF-1.4\n a planning drawing\n", "drawing.pdf")
    assert answer.status_code == 201, answer.text
    assert answer.json()["scan"] == "clean" and answer.json()["media_type"] == "application/pdf"
    assert kept(hub, blobs) == (1, 1)


def test_with_the_scanner_down_a_file_is_accepted_unscanned(scanned_hub: tuple[EmbeddedHub, FileStore], clamd: ClamdServer) -> None:
    hub, blobs = scanned_hub
    clamd.stop()
    try:
        answer = upload(hub, INFECTED_PDF, "later.pdf")
    finally:
        clamd.start()
    assert answer.status_code == 201, answer.text
    assert answer.json()["scan"] == "unscanned"
    assert kept(hub, blobs) == (1, 1)
