"""A submission sent with its files in one request (`multipart/form-data`), for small ones: a part
named `submission` holds the JSON answers, and each file is a part named after the form's
attachment field it belongs to (`-F submission=@answers.json -F photo_uploads=@bin.jpg`). The
body is read within HUB_ATTACHMENT_INLINE_MAX_BYTES, so it is parsed in memory by the standard
library's MIME parser; each file is then stored as an upload would be and its new id added to its
field, so intake checks it exactly as an id uploaded before."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import orjson

from hub.attachments.fields import AttachmentField
from hub.errors import BadRequest, MalformedJson, ValidationFailed

ANSWERS = "submission"
MAX_PARTS = 64


@dataclass(frozen=True)
class InlineFile:
    field: AttachmentField
    name: str
    data: bytes


@dataclass(frozen=True)
class Parsed:
    payload: Any
    files: list[InlineFile]
    # the answers and every file's bytes, hashed in order: a repeat is the same whatever its boundary
    body_sha256: str


def parse(content_type: str, body: bytes, fields: tuple[AttachmentField, ...]) -> Parsed:
    """The answers and the files of a multipart body; a body that is not one, a part the form has
    no field for, or a file without a name is a problem naming the part."""
    try:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequest("The Content-Type header is not valid.") from None
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not isinstance(message, EmailMessage) or not message.is_multipart() or message.get_boundary() is None:
        raise BadRequest("The body is not multipart/form-data with a boundary.")
    parts = list(message.iter_parts())
    if not parts or any(type(d).__name__ in ("StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect") for d in message.defects):
        raise BadRequest("The multipart body is malformed: no complete part between its boundaries.")
    if len(parts) > MAX_PARTS:
        raise BadRequest(f"The multipart body has {len(parts)} parts; at most {MAX_PARTS} are read.")
    by_name = {f.name: f for f in fields}
    answers: bytes | None = None
    files: list[InlineFile] = []
    errors: list[dict[str, str]] = []
    for index, part in enumerate(parts):
        name = part.get_param("name", header="content-disposition")
        pointer = f"/parts/{index}"
        data = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(data, bytes):
            errors.append({"pointer": pointer, "detail": "each part needs Content-Disposition: form-data; name=\"...\""})
        elif name == ANSWERS:
            if answers is not None:
                errors.append({"pointer": pointer, "detail": f"only one part may be named {ANSWERS!r}"})
            answers = data
        elif name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            errors.append({"pointer": pointer, "detail": f"this form has no attachment field {name!r} (it has: {known})"})
        else:
            filename = part.get_filename()
            if not isinstance(filename, str) or not filename.strip() or "/" in filename or "\\" in filename:
                errors.append({"pointer": pointer, "detail": "a file part needs a filename without '/' or '\\'"})
            elif not data:
                errors.append({"pointer": f"/files/{filename}", "detail": "the file is empty"})
            else:
                files.append(InlineFile(by_name[name], filename, data))
    for field in fields:
        if not field.many and sum(1 for f in files if f.field is field) > 1:
            errors.append({"pointer": field.pointer, "detail": "this field takes one file; more were sent"})
    if answers is None:
        errors.append({"pointer": "/parts", "detail": f"a part named {ANSWERS!r} must hold the answers as JSON"})
    if errors:
        raise ValidationFailed(f"{len(errors)} part(s) of the multipart body need attention.", errors=errors)
    assert answers is not None
    try:
        payload = orjson.loads(answers)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The {ANSWERS!r} part is not valid JSON: {exc}.") from None
    digest = hashlib.sha256(answers)
    for file in files:
        digest.update(file.field.name.encode() + b"\0" + hashlib.sha256(file.data).digest())
    return Parsed(payload, files, digest.hexdigest())


def with_ids(payload: Any, stored: list[tuple[InlineFile, str]]) -> Any:
    """The answers with each stored file's id added to its field (after any ids already there)."""
    if not isinstance(payload, dict) or not stored:
        return payload
    done = dict(payload)
    for file, attachment_id in stored:
        field = file.field
        if field.many:
            given = done.get(field.name)
            done[field.name] = [*(given if isinstance(given, list) else []), attachment_id]
        else:
            done[field.name] = attachment_id
    return done
