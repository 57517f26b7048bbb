"""Attachment checks and storage: type by bytes, EXIF/GPS stripped, bombs refused, blobs
content-addressed and encrypted on disk."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet
from PIL import Image

from hub.attachments.inspect import AttachmentRules, checked_type, clean_image, sniff
from hub.attachments.storage import FileStore
from hub.errors import BodyTooLarge, ValidationFailed

pytestmark = pytest.mark.unit


def jpeg_with_gps() -> bytes:
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (53.0, 30.0, 0.0), "W", (1.0, 15.0, 0.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "blobs", MultiFernet([Fernet(Fernet.generate_key())]))


def test_type_is_decided_by_the_bytes_not_the_name() -> None:
    rules = AttachmentRules()
    assert checked_type("photo.jpg", jpeg_with_gps(), rules) == "image/jpeg"
    with pytest.raises(ValidationFailed) as refused:
        checked_type("photo.jpg", b"MZ\x90\x00 this is a windows program" * 4, rules)
    assert "photo.jpg" in refused.value.detail
    assert refused.value.errors and refused.value.errors[0]["pointer"] == "/files/photo.jpg"


def test_empty_file_is_refused_naming_it() -> None:
    assert sniff(b"") is None
    with pytest.raises(ValidationFailed, match="empty.pdf"):
        checked_type("empty.pdf", b"", AttachmentRules())


def test_stored_image_has_no_exif_or_gps() -> None:
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)
    cleaned = clean_image("photo.jpg", original, "image/jpeg", AttachmentRules())
    again = Image.open(io.BytesIO(cleaned.data))
    assert len(again.getexif()) == 0
    assert (cleaned.width, cleaned.height) == (64, 48)
    assert cleaned.location is None


def test_location_kept_as_a_value_when_the_form_asks() -> None:
    cleaned = clean_image("photo.jpg", jpeg_with_gps(), "image/jpeg", AttachmentRules(keep_location=True))
    assert cleaned.location is not None
    latitude, longitude = cleaned.location
    assert latitude == pytest.approx(53.5)
    assert longitude == pytest.approx(-1.25)
    assert len(Image.open(io.BytesIO(cleaned.data)).getexif()) == 0


def test_decompression_bomb_is_refused_naming_the_file() -> None:
    out = io.BytesIO()
    Image.new("1", (5000, 5000)).save(out, format="PNG")  # small on the wire, 25 Mpx decoded
    with pytest.raises(ValidationFailed, match="bomb.png"):
        clean_image("bomb.png", out.getvalue(), "image/png", AttachmentRules(max_pixels=1_000_000))


def test_truncated_image_is_refused_naming_the_file() -> None:
    data = jpeg_with_gps()
    with pytest.raises(ValidationFailed, match="cut.jpg"):
        clean_image("cut.jpg", data[: len(data) // 2], "image/jpeg", AttachmentRules())


def test_blob_is_content_addressed_and_encrypted_on_disk(tmp_path: Path) -> None:
    blobs = store(tmp_path)
    data = b"%PDF-1.4 proof of residence " * 10_000  # several chunks
    stored = blobs.put(iter([data[:1000], data[1000:]]), limit=len(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    on_disk = (tmp_path / "blobs" / stored.sha256[:2] / stored.sha256).read_bytes()
    assert on_disk != data and b"proof of residence" not in on_disk
    assert b"".join(blobs.open(stored.sha256)) == data
    again = blobs.put(iter([data]), limit=len(data))
    assert again == stored
    blobs.delete(stored.sha256)
    assert not blobs.exists(stored.sha256)


def test_body_over_the_limit_is_cut_off_while_streaming(tmp_path: Path) -> None:
    blobs = store(tmp_path)
    read = []

    def endless() -> object:
        while True:
            read.append(1)
            yield b"x" * 65536

    with pytest.raises(BodyTooLarge):
        blobs.put(endless(), limit=200_000)  # type: ignore[arg-type]
    assert len(read) <= 4  # stopped at the limit, not at the end of the body
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
