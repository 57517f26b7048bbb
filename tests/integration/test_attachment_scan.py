"""The virus scan against a real clamd with a signature database the test writes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from PIL import Image

from hub.attachments.inspect import AttachmentRules
from hub.attachments.receive import receive
from hub.attachments.scan import Clamd, Clean, Infected, Unscanned
from hub.attachments.storage import FileStore
from hub.errors import ValidationFailed
from tests.support.clamd import ClamdServer
from tests.unit.test_attachments import jpeg_with_gps

pytestmark = pytest.mark.integration

SIGNED = b"this file stands in for malware in the hub's tests\n" * 3


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    server = ClamdServer(SIGNED)
    yield server
    server.close()


def test_file_matching_the_test_signature_is_infected(clamd: ClamdServer) -> None:
    verdict = clamd.client().scan(iter([SIGNED[:10], SIGNED[10:]]))
    assert verdict == Infected(f"{clamd.signature}.UNOFFICIAL")


def test_other_file_is_clean(clamd: ClamdServer) -> None:
    assert clamd.client().scan(iter([b"%PDF-1.4 a planning drawing"])) == Clean()


def test_scanner_down_is_unscanned_not_an_error(tmp_path: object) -> None:
    verdict = Clamd(str(tmp_path) + "/no.sock", timeout=1.0).scan(iter([SIGNED]))
    assert isinstance(verdict, Unscanned)


def test_received_photo_is_stored_clean_without_exif_and_encrypted(clamd: ClamdServer, tmp_path: Path) -> None:
    store = FileStore(tmp_path, MultiFernet([Fernet(Fernet.generate_key())]))
    original = jpeg_with_gps()
    got = receive("photo.jpg", iter([original]), AttachmentRules(keep_location=True), store, clamd.client())
    assert got.verdict == Clean() and got.media_type == "image/jpeg"
    assert got.location is not None
    stored = b"".join(store.open(got.sha256))
    assert len(Image.open(io.BytesIO(stored)).getexif()) == 0
    on_disk = (tmp_path / got.sha256[:2] / got.sha256).read_bytes()
    assert on_disk != stored and on_disk != original
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / got.sha256[:2] / got.sha256]


def test_received_file_matching_the_signature_is_infected(clamd: ClamdServer, tmp_path: Path) -> None:
    store = FileStore(tmp_path, MultiFernet([Fernet(Fernet.generate_key())]))
    pdf = b"%PDF-1.4\n" + SIGNED
    server = ClamdServer(pdf, name="Hub.Test.Pdf")
    try:
        got = receive("proof.pdf", iter([pdf]), AttachmentRules(), store, server.client())
    finally:
        server.close()
    assert got.verdict == Infected("Hub.Test.Pdf.UNOFFICIAL")


def test_received_file_of_a_refused_type_names_it_and_keeps_nothing(clamd: ClamdServer, tmp_path: Path) -> None:
    store = FileStore(tmp_path, MultiFernet([Fernet(Fernet.generate_key())]))
    with pytest.raises(ValidationFailed, match="photo.jpg"):
        receive("photo.jpg", iter([b"%PDF-1.4 not a photo"]), AttachmentRules(allowed_types=frozenset({"image/jpeg"})), store, clamd.client())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
