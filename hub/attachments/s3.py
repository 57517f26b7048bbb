"""Attachment blobs in any S3-compatible store (boto3), with the same sealed, content-addressed
layout as the filesystem store: the sealed stream is spooled to a temp file (bounded memory),
then uploaded under `<prefix><sha256>`."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from cryptography.fernet import MultiFernet

from hub.attachments.storage import StoredBlob, open_stream, seal_stream
from hub.errors import NotFound


@dataclass(frozen=True)
class S3Store:
    client: Any  # a boto3 S3 client, made with explicit connect/read timeouts
    bucket: str
    fernet: MultiFernet
    prefix: str = "attachments/"

    def _key(self, sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound("No such attachment.")
        return f"{self.prefix}{sha256}"

    def put(self, chunks: Iterable[bytes], limit: int) -> StoredBlob:
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile() as spool:
            for clear, sealed in seal_stream(self.fernet, chunks, limit):
                digest.update(clear)
                size += len(clear)
                spool.write(sealed)
            key = self._key(digest.hexdigest())
            if not self.exists(digest.hexdigest()):
                spool.seek(0)
                self.client.upload_fileobj(spool, self.bucket, key)
        return StoredBlob(digest.hexdigest(), size)

    def open(self, sha256: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(sha256))["Body"]
        except ClientError:
            raise NotFound("No such attachment.") from None
        return open_stream(self.fernet, body.iter_lines())

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError:
            return False
        return True

    def delete(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))
