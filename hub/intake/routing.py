"""Which connectors a submission goes to: routes by form and tenant, with conditions on content.

A condition is a JMESPath expression over the payload; the target is chosen when it is truthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.parser import ParsedResult

from hub.config.files import HubConfig


@dataclass(frozen=True)
class _Target:
    connector: str
    condition: ParsedResult | None


class Router:
    def __init__(self, config: HubConfig) -> None:
        # (form, tenant or "*") -> targets, conditions compiled once
        self._table: dict[tuple[str, str], list[_Target]] = {}
        for route in config.routes:
            targets = [
                _Target(t.connector, jmespath.compile(t.when) if t.when else None) for t in route.to
            ]
            for tenant in route.tenants:
                self._table.setdefault((route.form, tenant), []).extend(targets)

    def connectors_for(self, tenant: str, form_id: str, payload: Mapping[str, Any]) -> list[str]:
        """Connector names for this submission, in route order, each at most once."""
        chosen: list[str] = []
        for key in ((form_id, tenant), (form_id, "*")):
            for target in self._table.get(key, ()):
                if target.connector in chosen:
                    continue
                if target.condition is None or _truthy(target.condition.search(payload)):
                    chosen.append(target.connector)
        return chosen

    def is_routed(self, form_id: str) -> bool:
        return any(form == form_id for form, _ in self._table)


def _truthy(value: Any) -> bool:
    # JMESPath truthiness: false, null, "", [] and {} are false; 0 is true
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True
