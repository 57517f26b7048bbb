"""What a form accepts as attachments and the checks on each file: its type is sniffed from
its bytes (never its name or header), and images lose their EXIF and GPS metadata."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import puremagic
from PIL import Image, UnidentifiedImageError

from hub.errors import ValidationFailed

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


@dataclass(frozen=True)
class AttachmentRules:
    """A form's `attachments` config: how many files, how large, which types."""

    max_count: int = 5
    max_file_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 25 * 1024 * 1024
    allowed_types: frozenset[str] = field(default_factory=lambda: frozenset({"image/jpeg", "image/png", "application/pdf"}))
    keep_location: bool = False
    max_pixels: int = 40_000_000


def sniff(head: bytes) -> str | None:
    """The media type the bytes say they are, or None when no signature matches."""
    if not head:
        return None
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return None
    for match in matches:
        if match.mime_type:
            return str(match.mime_type)
    return None


def refuse(name: str, detail: str) -> ValidationFailed:
    return ValidationFailed(f"The file {name!r} cannot be attached: {detail}", errors=[{"pointer": f"/files/{name}", "detail": detail}])


def checked_type(name: str, head: bytes, rules: AttachmentRules) -> str:
    """The sniffed type if the form allows it, else a 422 naming the file."""
    kind = sniff(head)
    if kind is None or kind not in rules.allowed_types:
        said = kind or "an unrecognised type"
        raise refuse(name, f"its content is {said}; this form takes {', '.join(sorted(rules.allowed_types))}")
    return kind


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    width: int
    height: int
    location: tuple[float, float] | None


def _degrees(value: tuple[float, float, float], ref: str) -> float:
    d, m, s = (float(x) for x in value)
    sign = -1.0 if ref in ("S", "W") else 1.0
    return sign * (d + m / 60 + s / 3600)


def gps_position(gps: Mapping[int, Any]) -> tuple[float, float] | None:
    """(latitude, longitude) in degrees from an EXIF GPS IFD; None when it has none, or one that is
    malformed or off the globe (a camera's zero denominators, a hand-edited tag)."""
    if 2 not in gps or 4 not in gps:
        return None
    try:
        lat, long = _degrees(gps[2], gps.get(1, "N")), _degrees(gps[4], gps.get(3, "E"))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (math.isfinite(lat) and math.isfinite(long) and -90 <= lat <= 90 and -180 <= long <= 180):
        return None
    return lat, long


def clean_image(name: str, data: bytes, kind: str, rules: AttachmentRules) -> CleanImage:
    """The image saved again without its metadata; its GPS position kept as a value only when the
    form asks; more than `max_pixels` (a decompression bomb) or undecodable bytes are a 422."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > rules.max_pixels:
                    raise refuse(name, f"the image is {width}x{height} pixels; at most {rules.max_pixels} pixels are taken")
                probe.load()
                exif = probe.getexif()
                location = gps_position(exif.get_ifd(0x8825)) if rules.keep_location else None
                out = io.BytesIO()
                fmt = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF"}[kind]
                # a new image from the pixels alone: EXIF, XMP, GPS and comments are left behind
                clear = Image.frombytes(probe.mode, probe.size, probe.tobytes())
                palette = probe.getpalette()
                if probe.mode == "P" and palette:
                    clear.putpalette(palette)
                options = {"quality": 90} if fmt == "JPEG" else {}
                clear.save(out, format=fmt, **options)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise refuse(name, f"the image has too many pixels (at most {rules.max_pixels})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise refuse(name, "the image is damaged or truncated") from None
    return CleanImage(out.getvalue(), width, height, location)
