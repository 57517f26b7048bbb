"""Attachments on the way out: what a mapping sees of a submission's files, and the files a
connector is handed.

A mapping's scope has `attachments.<field>`: a list of {id, filename, media_type, size, sha256,
url, location} per attachment field, `url` a signed, expiring link (hub.attachments.links) for back
offices that fetch files (Open311 `media_url`), `location` a photo's kept GPS position {lat, long}. `attach: file` or `attach: base64` on an expression turns
such items into an AttachmentRef; before sending, `resolve` makes each one an AttachedFile (bytes
streamed from the store: e-mail attachments, REST multipart parts) or, for base64, a JSON object
{filename, media_type, content_base64}.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.attachments.links import LinkSigner
from hub.attachments.storage import BlobStore
from hub.errors import MappingError, NotFound, PermanentError, UnknownKey
from hub.privacy.sealing import Sealer
from hub.store.attachments import Attachment

MODES = ("file", "base64")
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif", "application/pdf": "pdf"}


def extension(media_type: str) -> str:
    return _EXTENSIONS.get(media_type, "bin")


def filename(field_name: str, index: int, media_type: str) -> str:
    """A neutral name (the resident's own file name is never kept: it may be personal)."""
    return f"{field_name}-{index + 1}.{extension(media_type)}"


def scope(attached: Sequence[tuple[str, Attachment]], links: LinkSigner, sealer: Sealer) -> dict[str, list[dict[str, Any]]]:
    """The `attachments` a mapping sees: field -> its files, in order. `location` is the photo's
    GPS position {lat, long} where its field kept it (opened with `sealer`), else None."""
    found: dict[str, list[dict[str, Any]]] = {}
    for field_name, attachment in attached:
        items = found.setdefault(field_name, [])
        items.append({
            "id": attachment.id, "filename": filename(field_name, len(items), attachment.media_type),
            "media_type": attachment.media_type, "size": attachment.size, "sha256": attachment.sha256,
            "url": links.url(attachment.id),
            "location": None if attachment.location is None else sealer.open(attachment.location),
        })
    return found


def positions(attached: Sequence[tuple[str, Attachment]], sealer: Sealer) -> list[str]:
    """The kept GPS positions' numbers as text, for the log scrubber (they are personal data)."""
    found: list[str] = []
    for _, attachment in attached:
        if attachment.location is None:
            continue
        try:
            opened = sealer.open(attachment.location)
        except UnknownKey:  # the mapping's scope parks the delivery with that reason; nothing to scrub
            continue
        found.extend(str(opened[key]) for key in ("lat", "long"))
    return found


@dataclass(frozen=True)
class AttachmentRef:
    """A mapped record's place for a file: sent as a file (`file`) or inline as base64."""

    attachment_id: str
    filename: str
    media_type: str
    size: int
    sha256: str
    mode: str

    @classmethod
    def of(cls, item: Any, mode: str, where: str) -> AttachmentRef:
        if not isinstance(item, Mapping) or not {"id", "filename", "media_type", "size", "sha256"} <= set(item):
            raise MappingError(f"{where}: attach: {mode} needs an item of attachments.<field>, not {type(item).__name__}")
        return cls(str(item["id"]), str(item["filename"]), str(item["media_type"]), int(item["size"]), str(item["sha256"]), mode)


@dataclass(frozen=True)
class AttachedFile:
    """A file for a connector to send: its name, type and size, and its bytes, streamed from the
    store each time `chunks()` is called (never held whole unless `read()` is asked for)."""

    filename: str
    media_type: str
    size: int
    attachment_id: str
    chunks: Callable[[], Iterator[bytes]] = field(repr=False, compare=False)

    def read(self) -> bytes:
        return b"".join(self.chunks())


def resolve(value: Any, store: BlobStore) -> Any:
    """The record with every AttachmentRef made a file or a base64 object; a blob the store no
    longer has is a PermanentError (sending the record without it would lose the photo)."""
    if isinstance(value, AttachmentRef):
        if not store.exists(value.sha256):
            raise PermanentError(f"attachment {value.attachment_id} is no longer in the attachment store")
        ref = value

        def chunks() -> Iterator[bytes]:
            try:
                yield from store.open(ref.sha256)
            except NotFound:
                raise PermanentError(f"attachment {ref.attachment_id} is no longer in the attachment store") from None

        if value.mode == "base64":
            # bounded by the form's max_file_bytes; a JSON body cannot be streamed anyway
            encoded = base64.b64encode(b"".join(chunks())).decode("ascii")
            return {"filename": value.filename, "media_type": value.media_type, "content_base64": encoded}
        return AttachedFile(value.filename, value.media_type, value.size, value.attachment_id, chunks)
    if isinstance(value, dict):
        return {k: resolve(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, store) for v in value]
    return value


def files_in(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, AttachedFile]]]:
    """The record without its files, and (top-level key, file) for each file it held; a key
    holding a list of files gives each of them."""
    rest: dict[str, Any] = {}
    files: list[tuple[str, AttachedFile]] = []
    for key, value in record.items():
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(item, AttachedFile) for item in items):
            files.extend((key, item) for item in items)
        else:
            rest[key] = value
    return rest, files


def file_keys(record: Mapping[str, Any], where: str = "record") -> list[str]:
    """Where the record holds an AttachedFile ("record.photos", "record.case.plan[0]")."""
    found: list[str] = []
    for key, value in record.items():
        at = f"{where}.{key}"
        if isinstance(value, AttachedFile):
            found.append(at)
        elif isinstance(value, Mapping):
            found.extend(file_keys(value, at))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, AttachedFile):
                    found.append(f"{at}[{index}]")
                elif isinstance(item, Mapping):
                    found.extend(file_keys(item, f"{at}[{index}]"))
    return found
