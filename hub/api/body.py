"""Reading a request's body within a limit, and telling whether it was sent as JSON: Starlette
reads any body size, so every front door reads through `read_body` and refuses early."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.requests import Request

from hub.errors import BadRequest, BodyTooLarge, MalformedJson


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes; a larger body is refused without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number.")
        if int(declared) > limit:
            raise BodyTooLarge(f"The body is {declared} bytes; the limit is {limit} bytes.", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The body is over the limit of {limit} bytes.", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}.") from None


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
