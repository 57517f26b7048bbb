"""Limits a submission must keep before it is validated: nesting depth, string length, no NUL
characters (PostgreSQL cannot store them), so a hostile payload is refused cheaply and plainly.
"""

from __future__ import annotations

from typing import Any

from hub.intake.forms import FieldError


def _pointer(parts: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def bound_errors(payload: Any, max_depth: int, max_string_length: int, limit: int = 20) -> list[FieldError]:
    """Every place the payload breaks a limit (at most `limit` of them), walking without recursion."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, list[str], int]] = [(payload, [], 0)]
    while stack and len(errors) < limit:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if len(value) > max_string_length:
                errors.append(FieldError(_pointer(path), f"is longer than {max_string_length} characters"))
            if "\x00" in value:
                errors.append(FieldError(_pointer(path), "contains a NUL character"))
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= max_depth:
            errors.append(FieldError(_pointer(path), f"is nested more than {max_depth} levels deep"))
            continue
        if isinstance(value, dict):
            for key, inner in value.items():
                if "\x00" in key or len(key) > max_string_length:
                    errors.append(FieldError(_pointer(path), "has a field name with a NUL character or too long"))
                stack.append((inner, path + [key], depth + 1))
        else:
            stack.extend((inner, path + [str(i)], depth + 1) for i, inner in enumerate(value))
    return errors
