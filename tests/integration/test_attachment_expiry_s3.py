"""Expiry of unlinked uploads (HUB_ATTACHMENT_UNLINKED_MAX_AGE_HOURS, the scheduled retention run)
with the S3 store, against a real S3-compatible server (moto's server mode) on a private port:
the bucket's objects go exactly when the filesystem store's files do."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hub.attachments.s3 import S3Store
from hub.config.settings import Settings
from hub.privacy import retention
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.s3 import S3Server
from tests.unit.test_attachment_expiry import age, ids, uploaded

pytestmark = pytest.mark.integration

SAMPLE = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hub(tmp_path: Path, s3: S3Server) -> Iterator[tuple[EmbeddedHub, str]]:
    """The embedded hub storing uploads in the bucket, under a prefix of its own."""
    prefix = f"expiry-{secrets.token_hex(4)}/"
    with embedded_hub(tmp_path) as running:
        store = S3Store(s3.client(), s3.bucket, running.runtime.sealer.fernet, prefix=prefix)
        running.app.state.attachment_store = store
        running.runtime.use_attachment_store(store)
        yield running, prefix


def photo(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, format="PNG")
    return out.getvalue()


def objects(s3: S3Server, prefix: str) -> set[str]:
    return {key.removeprefix(prefix) for key in s3.keys(prefix)}


def test_the_retention_run_deletes_an_expired_unlinked_uploads_object_and_keeps_linked_young_and_shared_ones(
        hub: tuple[EmbeddedHub, Any], s3: S3Server) -> None:
    running, prefix = hub
    limit = running.runtime.settings.attachment_unlinked_max_age_hours
    abandoned = uploaded(running, photo((200, 0, 0)), "abandoned.png")
    linked = uploaded(running, photo((0, 200, 0)), "linked.png")
    young = uploaded(running, photo((0, 0, 200)), "young.png")
    shared_old = uploaded(running, photo((90, 90, 90)), "shared-1.png")
    shared_young = uploaded(running, photo((90, 90, 90)), "shared-2.png")  # the same bytes: one object
    assert shared_old["sha256"] == shared_young["sha256"]
    assert running.post("report-fly-tipping", {**SAMPLE, "photo_uploads": [linked["id"]]}).status_code == 202
    assert objects(s3, prefix) == {a["sha256"] for a in (abandoned, linked, young, shared_old)}
    age(running, abandoned["id"], limit + 1)
    age(running, linked["id"], limit * 10)  # old, but a submission names it
    age(running, young["id"], limit - 1)
    age(running, shared_old["id"], limit + 1)

    retention.scheduled(running.runtime)

    assert ids(running) == {linked["id"], young["id"], shared_young["id"]}
    # the abandoned upload's object is gone from the bucket; the shared one stays while a row names it
    assert objects(s3, prefix) == {linked["sha256"], young["sha256"], shared_young["sha256"]}

    age(running, shared_young["id"], limit + 1)
    retention.scheduled(running.runtime)

    assert ids(running) == {linked["id"], young["id"]}
    assert objects(s3, prefix) == {linked["sha256"], young["sha256"]}
