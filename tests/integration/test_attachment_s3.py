"""The S3 attachment store against a real S3-compatible server (moto's server mode) on a
private port: the same promises as the filesystem store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from hub.attachments.s3 import S3Store
from hub.errors import BodyTooLarge
from tests.support.s3 import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = S3Server()
    try:
        yield server.client()
    finally:
        server.close()


def test_blob_is_content_addressed_and_encrypted_in_the_bucket(s3: Any) -> None:
    store = S3Store(s3, "hub", MultiFernet([Fernet(Fernet.generate_key())]))
    data = b"%PDF-1.4 a planning drawing " * 20_000
    stored = store.put(iter([data[:7], data[7:]]), limit=len(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    raw = s3.get_object(Bucket="hub", Key=f"attachments/{stored.sha256}")["Body"].read()
    assert raw != data and b"planning drawing" not in raw
    assert b"".join(store.open(stored.sha256)) == data
    store.delete(stored.sha256)
    assert not store.exists(stored.sha256)


def test_body_over_the_limit_uploads_nothing(s3: Any) -> None:
    store = S3Store(s3, "hub", MultiFernet([Fernet(Fernet.generate_key())]), prefix="limit/")
    with pytest.raises(BodyTooLarge):
        store.put(iter([b"x" * 100_000] * 5), limit=300_000)
    assert s3.list_objects_v2(Bucket="hub", Prefix="limit/").get("KeyCount", 0) == 0
