"""The S3 attachment store against a real S3-compatible server (moto's server mode) on a
private port: the same promises as the filesystem store."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography.fernet import Fernet, MultiFernet

from hub.attachments.s3 import S3Store
from hub.errors import BodyTooLarge
from tests.support.realworld import unavailable
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = shutil.which("moto_server")
    if server is None:
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1", config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}))
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="hub")
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.terminate()
                raise
            time.sleep(0.2)
    yield client
    proc.terminate()
    proc.wait(10)


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
