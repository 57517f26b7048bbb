"""Where attachment bytes live: one small interface (`BlobStore`), a filesystem store by
default; every blob is named by the sha256 of its clear bytes and kept encrypted.

Bytes are sealed chunk by chunk (each chunk one Fernet token, one line), so neither writing
nor reading holds a whole file in memory, and any key of HUB_ENCRYPTION_KEYS opens them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.fernet import InvalidToken, MultiFernet

from hub.errors import BodyTooLarge, ConfigError, NotFound, UnknownKey
from hub.privacy.sealing import UNKNOWN_KEY

if TYPE_CHECKING:
    from hub.config.settings import Settings

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class StoredBlob:
    """What a store returns for bytes it now holds: their sha256 (the name) and size."""

    sha256: str
    size: int


class BlobStore(Protocol):
    """Any store of attachment bytes: the filesystem here; an S3-compatible store beside it."""

    def put(self, chunks: Iterable[bytes], limit: int) -> StoredBlob: ...

    def open(self, sha256: str) -> Iterator[bytes]: ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...


def seal_stream(fernet: MultiFernet, chunks: Iterable[bytes], limit: int) -> Iterator[tuple[bytes, bytes]]:
    """(clear chunk, sealed line) for each chunk, re-cut to CHUNK_BYTES; over `limit` clear bytes
    raises BodyTooLarge at once, so a body over the limit is never read to its end."""
    size = 0
    buffer = bytearray()
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The file is larger than this form takes ({limit} bytes).", limit=limit)
        buffer += chunk
        while len(buffer) >= CHUNK_BYTES:
            clear = bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
            yield clear, fernet.encrypt(clear) + b"\n"
    if buffer:
        yield bytes(buffer), fernet.encrypt(bytes(buffer)) + b"\n"


def open_stream(fernet: MultiFernet, lines: Iterable[bytes]) -> Iterator[bytes]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            yield fernet.decrypt(line)
        except InvalidToken:
            raise UnknownKey(UNKNOWN_KEY) from None


@dataclass(frozen=True)
class FileStore:
    """Blobs as files under `root`, at <root>/<sha[:2]>/<sha>, written to a temp file first
    and renamed, so a reader never sees half a blob."""

    root: Path
    fernet: MultiFernet

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound("No such attachment.")
        return self.root / sha256[:2] / sha256

    def put(self, chunks: Iterable[bytes], limit: int) -> StoredBlob:
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                for clear, sealed in seal_stream(self.fernet, chunks, limit):
                    digest.update(clear)
                    size += len(clear)
                    handle.write(sealed)
            path = self._path(digest.hexdigest())
            path.parent.mkdir(exist_ok=True)
            if path.exists():
                os.unlink(temp)  # the same bytes are stored already
            else:
                os.replace(temp, path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return StoredBlob(digest.hexdigest(), size)

    def open(self, sha256: str) -> Iterator[bytes]:
        path = self._path(sha256)
        if not path.exists():
            raise NotFound("No such attachment.")

        def lines() -> Iterator[bytes]:
            with path.open("rb") as handle:
                yield from handle

        return open_stream(self.fernet, lines())

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)


def store_from_settings(settings: Settings, fernet: MultiFernet) -> BlobStore:
    """The store HUB_ATTACHMENT_STORE names: files under HUB_DATA_DIR/attachments, or an
    S3-compatible bucket (boto3, explicit timeouts; credentials from boto3's own AWS_* sources)."""
    if settings.attachment_store == "s3":
        if not settings.attachment_s3_bucket:
            raise ConfigError("HUB_ATTACHMENT_STORE=s3 needs HUB_ATTACHMENT_S3_BUCKET")
        import boto3  # only where S3 is used
        from botocore.config import Config

        from hub.attachments.s3 import S3Store

        client = boto3.client("s3", endpoint_url=settings.attachment_s3_endpoint_url,
                              config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}))
        return S3Store(client, settings.attachment_s3_bucket, fernet)
    return FileStore(settings.data_dir / "attachments", fernet)
