"""One uploaded file from body to stored blob: streamed into the store under the form's size
limit, its type sniffed from the stored bytes, images cleaned, then scanned."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from hub.attachments.inspect import IMAGE_TYPES, AttachmentRules, checked_type, clean_image
from hub.attachments.scan import Verdict
from hub.attachments.storage import BlobStore

SNIFF_BYTES = 8192


class Scanner(Protocol):
    def scan(self, chunks: Iterable[bytes]) -> Verdict: ...


@dataclass(frozen=True)
class Received:
    sha256: str
    size: int
    media_type: str
    verdict: Verdict
    width: int | None = None
    height: int | None = None
    location: tuple[float, float] | None = None


def receive(name: str, chunks: Iterable[bytes], rules: AttachmentRules, store: BlobStore, scanner: Scanner) -> Received:
    """Stores one file; a type the form refuses or a damaged image is a 422 naming it (nothing
    kept), a body over `max_file_bytes` a 413. Images are kept only without their metadata."""
    raw = store.put(chunks, rules.max_file_bytes)
    try:
        head = b""
        for chunk in store.open(raw.sha256):
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        kind = checked_type(name, head, rules)
        width = height = None
        location = None
        blob = raw
        if kind in IMAGE_TYPES:
            # bounded by max_file_bytes, which the put above enforced
            image = clean_image(name, b"".join(store.open(raw.sha256)), kind, rules)
            blob = store.put(iter([image.data]), max(rules.max_file_bytes, len(image.data)))
            width, height, location = image.width, image.height, image.location
            if blob.sha256 != raw.sha256:
                store.delete(raw.sha256)
    except BaseException:
        store.delete(raw.sha256)
        raise
    verdict = scanner.scan(store.open(blob.sha256))
    return Received(blob.sha256, blob.size, kind, verdict, width, height, location)
