"""What an erasure looks for wherever a resident's answer was copied: the forms a quoted answer
takes in a back office's error text (as typed, JSON-escaped once or twice), and the reason every
erased delivery shows from then on.

The worker blanks these forms in what it stores and logs; an erasure blanks them again in what
was stored before (hub/store/personal_data.py `erase`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import orjson

ERASED_REASON = "erased at the resident's request"

# shorter values would blank ordinary words ("Al", "12") and ruin the text that quotes them
MIN_LENGTH = 3
_HEX = re.compile(r"\\u[0-9a-f]{4}")


def _escaped(value: str, ascii_only: bool) -> str:
    if ascii_only:
        # json.dumps's default (ensure_ascii): "Zoë" is written "Zo\u00eb"
        return "".join(c if ord(c) < 128 else "".join(f"\\u{u:04x}" for u in _utf16(c)) for c in _escaped(value, False))
    return orjson.dumps(value).decode()[1:-1]


def _utf16(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def quoted_forms(values: Iterable[str]) -> list[str]:
    """Each value and the ways a JSON text quoting it writes it (once, and again inside a JSON
    string), longest first, so a form holding another is blanked whole."""
    found: set[str] = set()
    for value in values:
        if len(value) < MIN_LENGTH:
            continue
        found.add(value)
        for ascii_only in (False, True):
            once = _escaped(value, ascii_only)
            found.add(once)
            found.add(_escaped(once, ascii_only))
            # with upper-case hex digits, as some JSON writers (Java, .NET) escape
            found.add(_HEX.sub(lambda m: m.group(0).upper().replace("\\U", "\\u"), once))
    return sorted(found, key=len, reverse=True)
