"""Pre-fill: the answers a form can start with for a signed-in resident, each marked with where it
came from: the customer record (a reference a back office gave) or a lookup to a back office
(premises by UPRN, an account enquiry), whose answers are kept `cache_seconds` per resident.

A lookup that fails leaves its fields out and says so; it never fails the whole answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from connectors.base import Connector
from hub.errors import DeliveryError
from hub.logs import get_logger
from hub.residents.config import Lookup, ResidentConfig

log = get_logger("hub.residents")


@dataclass
class LookupCache:
    """Answers of lookups by (tenant, subject digest, lookup, argument), for a short while."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, ...], tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    max_entries: int = 10_000

    def get(self, key: tuple[str, ...]) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= self.clock():
                self._entries.pop(key, None)
                return False, None
            return True, entry[1]

    def put(self, key: tuple[str, ...], value: Any) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                for stale in [k for k, (until, _) in self._entries.items() if until <= now]:
                    del self._entries[stale]
                if len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (self.clock() + self.seconds, value)


@dataclass(frozen=True)
class Filled:
    fields: list[dict[str, Any]]
    # lookups that could not be asked: name and why (no reference yet, back office down)
    unavailable: list[dict[str, str]]


class Prefiller:
    def __init__(self, config: ResidentConfig, connector: Callable[[str], Connector], cache: LookupCache | None = None) -> None:
        self.config = config
        self.connector = connector
        self.cache = cache or LookupCache(config.cache_seconds)

    def offers(self, form_id: str) -> bool:
        return form_id in self.config.forms

    def fill(self, tenant: str, subject: str, form_id: str, record: dict[str, dict[str, Any]]) -> Filled:
        """`record` is the resident's references (kind -> {value, connector, ...})."""
        fields: list[dict[str, Any]] = []
        unavailable: dict[str, str] = {}
        answers: dict[str, Any] = {}
        for item in self.config.forms.get(form_id, ()):
            if item.reference is not None:
                if item.reference in record:
                    ref = record[item.reference]
                    fields.append({"pointer": item.pointer, "value": ref["value"],
                                   "source": {"type": "record", "kind": item.reference, "connector": ref["connector"]}})
                continue
            name = item.lookup or ""
            lookup = self.config.lookups[name]
            if name not in answers and name not in unavailable:
                answer, why = self._ask(tenant, subject, name, lookup, record)
                if why is not None:
                    unavailable[name] = why
                else:
                    answers[name] = answer
            if name in answers:
                try:
                    value = jmespath.search(lookup.fields[item.field or ""], answers[name])
                except JMESPathError:
                    # the answer lacks what the expression needs (no premises for the UPRN, a null
                    # part of an address): this field is not filled, the others still are
                    value = None
                if value not in (None, "") and not isinstance(value, (dict, list)):
                    fields.append({"pointer": item.pointer, "value": value if isinstance(value, (int, float, bool)) else str(value),
                                   "source": {"type": "lookup", "lookup": name, "connector": lookup.connector}})
        return Filled(fields, [{"lookup": k, "detail": v} for k, v in unavailable.items()])

    def _ask(self, tenant: str, subject: str, name: str, lookup: Lookup, record: dict[str, dict[str, Any]]) -> tuple[Any, str | None]:
        reference = record.get(lookup.needs)
        if reference is None:
            return None, f"no {lookup.needs} is known for this resident yet"
        argument = str(reference["value"])
        key = (tenant, subject, name, argument)
        hit, answer = self.cache.get(key)
        if hit:
            return answer, None
        try:
            answer = self.connector(lookup.connector).lookup(lookup.operation, {**lookup.arguments, lookup.argument: argument})
        except DeliveryError as exc:
            # the reason names the back office and the fault, never the argument (personal data)
            log.warning("prefill_lookup_failed", lookup=name, connector=lookup.connector, error=type(exc).__name__)
            return None, f"{lookup.connector} could not be asked just now"
        self.cache.put(key, answer)
        return answer, None
