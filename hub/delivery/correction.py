"""Edit then replay: staff correct a parked delivery's answers, see what changed and the exact
body its connector will send, and confirm; the correction is stored sealed and audited, and the
delivery replayed (hub/store/corrections.py). The submission's own answers never change.

`check` is the dry run (nothing stored); `confirm` checks again and stores. The body is built by
the worker's own steps: `hub/delivery/attempt.py` `prepared` and `mapped`, then the connector's
`preview`, the code its `send` uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Preview
from hub.delivery.attempt import mapped, prepared
from hub.errors import ConfigError, DeliveryError, UnknownKey
from hub.intake.bounds import bound_errors
from hub.intake.forms import Form
from hub.runtime import Runtime
from hub.store import corrections
from hub.store.deliveries import DeliveryJob

PERSONAL = "[personal]"
REASON_MAX = 500


@dataclass(frozen=True)
class Change:
    pointer: str
    label: str
    before: Any
    after: Any
    # an x-pii field: the audit log keeps that it changed, never the values
    personal: bool

    def as_dict(self) -> dict[str, Any]:
        return {"pointer": self.pointer, "label": self.label, "before": self.before, "after": self.after, "personal": self.personal}


@dataclass
class Checked:
    """What a correction would do: the answers, what changed, problems per field, and the body."""

    target: corrections.Target
    answers: Any
    changes: list[Change] = field(default_factory=list)
    # {"pointer", "detail"}: the answers' pointers, or "/reason"
    errors: list[dict[str, str]] = field(default_factory=list)
    preview: Preview | None = None
    # the mapping or connector refused the corrected answers
    preview_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.preview is not None


class NotCorrectable(Exception):
    """The delivery is not parked, or its submission was erased or purged: say which."""

    def __init__(self, why: str, erased: bool = False) -> None:
        super().__init__(why)
        self.why, self.erased = why, erased


def find(runtime: Runtime, delivery_id: int, tenant: str | None) -> corrections.Target | None:
    return corrections.target(runtime.engine, delivery_id, tenant)


def correctable(found: corrections.Target) -> None:
    """Raises NotCorrectable unless the delivery may be corrected and replayed."""
    if found.erased_at is not None:
        raise NotCorrectable(f"Delivery {found.delivery_id} was erased at the resident's request: nothing of it is sent again.", erased=True)
    if found.original is None:
        raise NotCorrectable(f"The answers of {found.reference} were purged by retention: there is nothing to correct.")
    if found.state != "parked":
        raise NotCorrectable(f"Delivery {found.delivery_id} is {found.state}, not parked: only a parked delivery is corrected and replayed.")


def answers(runtime: Runtime, found: corrections.Target) -> tuple[Any, Any]:
    """(the answers as they came, the answers the worker would send now: the newest correction's)."""
    try:
        original = runtime.sealer.open(found.original) if found.original is not None else None
        current = runtime.sealer.open(found.corrected) if found.corrected is not None else original
    except UnknownKey as error:
        raise NotCorrectable(str(error)) from None
    return original, current


def check(runtime: Runtime, found: corrections.Target, edited: Any, reason: str) -> Checked:
    """The dry run: validates the edited answers against the form's JSON Schema (every failing
    field named) and the reason, works out the diff and renders the body. Stores nothing."""
    correctable(found)
    original, _ = answers(runtime, found)
    form = runtime.forms.get(found.form_id, found.form_version)
    checked = Checked(found, edited)
    reason = reason.strip()
    if not reason:
        checked.errors.append({"pointer": "/reason", "detail": "Enter the reason for this correction"})
    elif len(reason) > REASON_MAX:
        checked.errors.append({"pointer": "/reason", "detail": f"The reason must be {REASON_MAX} characters or fewer"})
    if form is None:
        checked.errors.append({"pointer": "", "detail": f"Form {found.form_id} version {found.form_version} is no longer configured"})
        return checked
    settings = runtime.settings
    problems = [e.as_dict() for e in (bound_errors(edited, settings.max_depth, settings.max_string_length) or form.errors(edited))]
    checked.errors.extend(problems)
    checked.changes = diff(form, original, edited)
    if not checked.changes:
        checked.errors.append({"pointer": "", "detail": "Change at least one answer: these are the answers as they came"})
    if not problems:
        try:
            checked.preview = render(runtime, found, edited)
        except (DeliveryError, ConfigError) as error:
            checked.preview_error = getattr(error, "reason", str(error))
            checked.errors.append({"pointer": "", "detail": f"{found.connector} cannot be sent these answers: {checked.preview_error}"})
    return checked


def render(runtime: Runtime, found: corrections.Target, payload: Any) -> Preview:
    """The body the connector will send for these answers, by the worker's own mapping and the
    connector's own encoding, for the delivery's next attempt."""
    job = DeliveryJob(found.delivery_id, found.connector, found.state, found.attempts, 0, None, found.reference, found.tenant,
                      "", found.form_id, found.form_version, None, found.received_at)
    meta, context = prepared(job, found.attempts + 1)
    record = mapped(runtime, job, payload, meta)
    return runtime.connector(found.connector).preview(record, context)


def confirm(runtime: Runtime, found: corrections.Target, edited: Any, reason: str, actor: str) -> tuple[Checked, dict[str, Any] | None]:
    """Checks again; when all is well stores the correction (sealed), audits it and replays the
    delivery. (checked, the replayed delivery) or (checked, None) with the problems."""
    checked = check(runtime, found, edited, reason)
    if not checked.ok:
        return checked, None
    sealed = runtime.sealer.seal(edited)
    sealed_diff = runtime.sealer.seal([c.as_dict() for c in checked.changes])
    audited = {"changes": [{"pointer": c.pointer, "before": PERSONAL if c.personal else c.before,
                            "after": PERSONAL if c.personal else c.after} for c in checked.changes]}
    done = corrections.correct_and_replay(runtime.engine, found, sealed, sealed_diff, reason.strip(), actor, audited)
    if done is None:
        raise NotCorrectable(f"Delivery {found.delivery_id} is no longer parked: nothing was stored.")
    return checked, done


# -- the answers as fields: leaves by JSON pointer


def leaves(value: Any, parts: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every scalar in the answers with its path, in document order."""
    if isinstance(value, dict):
        return [leaf for key, sub in value.items() for leaf in leaves(sub, (*parts, str(key)))]
    if isinstance(value, list):
        return [leaf for i, sub in enumerate(value) for leaf in leaves(sub, (*parts, str(i)))]
    return [(parts, value)]


def pointer(parts: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def label(form: Form | None, parts: tuple[str, ...]) -> str:
    """The schema's titles along the path ("Your name: First name"), else the pointer."""
    node: Any = form.schema if form is not None else None
    titles: list[str] = []
    for part in parts:
        node = _child(node, part)
        if node is None:
            return pointer(parts)
        if isinstance(node.get("title"), str):
            titles.append(node["title"])
    return ": ".join(titles) if titles else pointer(parts)


def _child(node: Any, part: str) -> Any:
    if not isinstance(node, dict):
        return None
    props = node.get("properties")
    if isinstance(props, dict) and isinstance(props.get(part), dict):
        return props[part]
    if part.isdigit() and isinstance(node.get("items"), dict):
        return node["items"]
    for keyword in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(keyword) or ():
            found = _child(branch, part)
            if found is not None:
                return found
    return None


def personal(form: Form | None, parts: tuple[str, ...]) -> bool:
    """Whether the field is marked x-pii (without the form's schema, every field is)."""
    if form is None:
        return True
    return any(_matches(path, parts) for path in form.pii_paths)


def _matches(path: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if path[:1] == ("**",):
        inner = path[1:]
        return any(_matches(inner, parts[i:]) for i in range(len(parts)))
    if len(path) > len(parts):
        return False
    return all((p == "*" and q.isdigit()) or p == q for p, q in zip(path, parts, strict=False))


def diff(form: Form | None, before: Any, after: Any) -> list[Change]:
    """Field by field: changed, added and removed answers, in the order of the edited answers."""
    old, new = dict(leaves(before)), dict(leaves(after))
    changes = []
    for parts in [*new, *(p for p in old if p not in new)]:
        was, now = old.get(parts, _ABSENT), new.get(parts, _ABSENT)
        if was != now or type(was) is not type(now):
            changes.append(Change(pointer(parts), label(form, parts), _shown(was), _shown(now), personal(form, parts)))
    return changes


_ABSENT = object()


def _shown(value: Any) -> Any:
    return None if value is _ABSENT else value


def as_text(value: Any) -> str:
    """A leaf as staff type it in an input."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def typed(text: str, like: Any) -> Any:
    """What staff typed, as the type the answer had (a number stays a number where it parses;
    otherwise the text, which the schema then names as wrong)."""
    if isinstance(like, bool):
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    if isinstance(like, int | float) or like is None:
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, int | float | bool) or value is None else text
    return text


def edited(current: Any, typed_in: dict[str, str]) -> Any:
    """The answers with staff's edits applied, by pointer; a blank text answer of an object's
    field removes it (an optional answer taken out), leaving the schema to say if it is needed."""
    result = json.loads(json.dumps(current))
    for parts, was in leaves(current):
        key = pointer(parts)
        if key not in typed_in:
            continue
        text = typed_in[key]
        parent = _parent(result, parts)
        last: Any = int(parts[-1]) if isinstance(parent, list) else parts[-1]
        if text == "" and isinstance(parent, dict) and not isinstance(was, bool):
            parent.pop(last, None)
        elif parts:
            parent[last] = typed(text, was)
        else:
            result = typed(text, was)
    return result


def _parent(value: Any, parts: tuple[str, ...]) -> Any:
    for part in parts[:-1]:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value
