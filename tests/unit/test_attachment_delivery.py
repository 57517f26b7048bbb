"""Attachments on the way out: signed links, the mapping's attach step, intake's checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, MultiFernet

from hub.attachments.delivery import AttachedFile, resolve, scope
from hub.attachments.fields import attachment_fields, check
from hub.attachments.links import LinkSigner
from hub.attachments.storage import FileStore
from hub.delivery.mapping import RecordMapping
from hub.errors import BadLinkSignature, LinkExpired
from hub.privacy.sealing import Sealer, new_key
from hub.store.attachments import Attachment

SCHEMA = {"properties": {"photos": {"type": "array", "x-attachment": True,
                                    "x-attachments": {"max_count": 2, "allowed_types": ["image/png"], "max_file_bytes": 100}}}}


def row(attachment_id: str, sha: str, scan: str = "clean", media: str = "image/png", size: int = 10, tenant: str = "a") -> Attachment:
    return Attachment(attachment_id, tenant, "c", sha, media, size, scan, datetime.now(UTC))


def test_a_signed_link_works_until_it_expires_and_refuses_any_change() -> None:
    signer = LinkSigner(b"k" * 32, "https://hub.example", 60)
    url = signer.url("att_x")
    expires = int(url.split("expires=")[1].split("&")[0])
    signature = url.split("signature=")[1]
    signer.check("att_x", expires, signature)
    with pytest.raises(BadLinkSignature):
        signer.check("att_y", expires, signature)
    with pytest.raises(BadLinkSignature):
        signer.check("att_x", expires + 1, signature)
    with pytest.raises(LinkExpired):
        signer.check("att_x", expires, signature, now=time.time() + 120)


def test_intake_names_the_field_of_an_unknown_quarantined_or_wrong_type_id() -> None:
    [field] = attachment_fields(SCHEMA)
    found = {"att_q": row("att_q", "1" * 64, scan="quarantined"), "att_j": row("att_j", "2" * 64, media="image/jpeg")}
    checked = check((field,), {"photos": ["att_none", "att_q", "att_j"]}, found, {"att_j": "holiday.jpg"})
    pointers = [e["pointer"] for e in checked.errors]
    assert pointers == ["/photos", "/photos/0", "/photos/1", "/photos/2"]
    assert "quarantined" in checked.errors[2]["detail"]
    assert "'holiday.jpg'" in checked.errors[3]["detail"] and "image/jpeg" in checked.errors[3]["detail"]


def test_a_mapping_sends_files_as_files_or_base64_and_links_as_urls(tmp_path: Path) -> None:
    mapping_file = tmp_path / "f.c.yaml"
    mapping_file.write_text(
        "form: f\nconnector: c\nrecord:\n"
        "  media_url: {path: 'attachments.photos[0].url'}\n"
        "  files: {path: attachments.photos, attach: file}\n"
        "  inline: {path: 'attachments.photos[0]', attach: base64}\n"
    )
    store = FileStore(tmp_path / "blobs", MultiFernet([Fernet(Fernet.generate_key())]))
    blob = store.put(iter([b"\x89PNG photo bytes"]), 1000)
    signer = LinkSigner(b"k" * 32, "https://hub.example", 60)
    files = scope([("photos", row("att_p", blob.sha256, size=blob.size))], signer, Sealer.from_keys([new_key()]))
    record = resolve(RecordMapping.load(mapping_file).apply({}, {}, files), store)
    assert record["media_url"].startswith("https://hub.example/v1/attachments/att_p/content?expires=")
    [sent] = record["files"]
    assert isinstance(sent, AttachedFile) and sent.read() == b"\x89PNG photo bytes" and sent.filename == "photos-1.png"
    assert record["inline"]["content_base64"] == "iVBORyBwaG90byBieXRlcw=="
