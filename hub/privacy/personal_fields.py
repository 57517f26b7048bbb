"""Where personal data sits in a form's payload: the fields a schema marks `"x-pii": true`,
and how to find, mask or remove their values, and find the resident's e-mail address.

Paths are tuples of property names, "*" for every item of a list, and "**" (a field of a
`$defs` definition) for "at any depth".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema_rs


def pii_paths(schema: Any, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if not isinstance(schema, dict):
        return
    if schema.get("x-pii") is True:
        yield prefix
        return
    for name, sub in (schema.get("properties") or {}).items():
        yield from pii_paths(sub, prefix + (name,))
    if isinstance(schema.get("items"), dict):
        yield from pii_paths(schema["items"], prefix + ("*",))
    for keyword in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(keyword) or ():
            yield from pii_paths(sub, prefix)
    for sub in (schema.get("$defs") or {}).values():
        # definitions are reached through $ref; mark their fields wherever they are used
        for inner in pii_paths(sub, ()):
            yield ("**",) + inner


def strings_at(value: Any, path: tuple[str, ...]) -> Iterator[str]:
    if not path:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for inner in value.values():
                yield from strings_at(inner, ())
        elif isinstance(value, list):
            for inner in value:
                yield from strings_at(inner, ())
        elif value is not None and not isinstance(value, bool):
            yield str(value)
        return
    head, rest = path[0], path[1:]
    if head == "**":
        # a $defs field: look for it at any depth
        yield from strings_at(value, rest)
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            yield from strings_at(child, path)
    elif head == "*" and isinstance(value, list):
        for item in value:
            yield from strings_at(item, rest)
    elif isinstance(value, dict) and head in value:
        yield from strings_at(value[head], rest)


@dataclass(frozen=True)
class EmailPath:
    """Where an e-mail address may be. `guards` are (depth, validator of an `if`): the value
    `depth` steps down the path must match it, as GOV.UK Forms' answers say which is the e-mail."""

    path: tuple[str, ...]
    guards: tuple[tuple[int, Any], ...] = ()


def email_paths(
    root: Any, schema: Any, prefix: tuple[str, ...], in_pii: bool, guards: tuple[tuple[int, Any], ...], refs: frozenset[str]
) -> Iterator[EmailPath]:
    if not isinstance(schema, dict):
        return
    in_pii = in_pii or schema.get("x-pii") is True
    if in_pii and schema.get("format") == "email":
        yield EmailPath(prefix, guards)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in refs:
        # a local definition, read in the context (x-pii or not) of the field that uses it
        yield from email_paths(root, _resolve(root, ref), prefix, in_pii, guards, refs | {ref})
    for name, sub in (schema.get("properties") or {}).items():
        yield from email_paths(root, sub, prefix + (name,), in_pii, guards, refs)
    if isinstance(schema.get("items"), dict):
        yield from email_paths(root, schema["items"], prefix + ("*",), in_pii, guards, refs)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for sub in schema.get(keyword) or ():
            yield from email_paths(root, sub, prefix, in_pii, guards, refs)
    if isinstance(schema.get("if"), dict) and isinstance(schema.get("then"), dict):
        guard = (len(prefix), jsonschema_rs.validator_for(schema["if"], validate_formats=False))
        yield from email_paths(root, schema["then"], prefix, in_pii, guards + (guard,), refs)


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, dict) else None
    return node


def emails_at(value: Any, email: EmailPath, depth: int) -> Iterator[str]:
    for at, check in email.guards:
        if at == depth and not check.is_valid(value):
            return
    if depth == len(email.path):
        if isinstance(value, str) and value.strip():
            yield value
        return
    head = email.path[depth]
    if head == "*" and isinstance(value, list):
        for item in value:
            yield from emails_at(item, email, depth + 1)
    elif isinstance(value, dict) and head in value:
        yield from emails_at(value[head], email, depth + 1)


# a marker for "remove this field" when rewriting a payload
DROP: Any = object()


def rewrite(value: Any, path: tuple[str, ...], replacement: Any) -> Any:
    """A copy of `value` with whatever is at `path` replaced by `replacement` (or removed: DROP)."""
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if head == "**":
        here = rewrite(value, rest, replacement)
        return here if here is DROP else _each_child(here, lambda child: rewrite(child, path, replacement))
    if head == "*":
        return _each_child(value, lambda child: rewrite(child, rest, replacement)) if isinstance(value, list) else value
    if isinstance(value, dict) and head in value:
        inner = rewrite(value[head], rest, replacement)
        return {k: (inner if k == head else v) for k, v in value.items() if not (k == head and inner is DROP)}
    return value


def _each_child(value: Any, change: Any) -> Any:
    if isinstance(value, dict):
        return {k: new for k, v in value.items() if (new := change(v)) is not DROP}
    if isinstance(value, list):
        return [new for v in value if (new := change(v)) is not DROP]
    return value


def overlaps(parts: Sequence[str | int], path: tuple[str, ...]) -> bool:
    """Whether the value at `parts` is, is inside, or holds the x-pii field at `path`."""
    if not path or not parts:
        return True
    head, rest = path[0], path[1:]
    if head == "**":
        return any(overlaps(parts[i:], rest) for i in range(len(parts) + 1))
    if (head == "*" and isinstance(parts[0], int)) or str(parts[0]) == head:
        return overlaps(parts[1:], rest)
    return False
