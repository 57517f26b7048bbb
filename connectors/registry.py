"""The registry of connector types, filled from the `hub.connectors` entry-point group.

A council's own package adds a connector by declaring an entry point; no hub code changes.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points

from pydantic import ValidationError

from connectors.base import Connector, Secrets
from hub.config.files import ConnectorConfig
from hub.errors import ConfigError
from hub.outbound.guard import UNRESTRICTED, AllowList, building_with

ENTRY_POINT_GROUP = "hub.connectors"


class ConnectorRegistry:
    def __init__(self) -> None:
        self._types: dict[str, type[Connector]] = {}
        # types whose package failed to import: an error only for connectors that use them
        self._broken: dict[str, str] = {}

    @classmethod
    def from_entry_points(cls) -> ConnectorRegistry:
        registry = cls()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = entry.load()
            except Exception as exc:
                registry._broken[entry.name] = f"{entry.value}: {type(exc).__name__}: {exc}"
                continue
            registry.register(entry.name, loaded)
        return registry

    def register(self, type_name: str, connector_class: type[Connector]) -> type[Connector]:
        if type_name in self._types and self._types[type_name] is not connector_class:
            raise ConfigError(f"connector type {type_name!r} is registered twice")
        if not (isinstance(connector_class, type) and issubclass(connector_class, Connector)):
            raise ConfigError(f"connector type {type_name!r} is not a Connector subclass")
        self._types[type_name] = connector_class
        return connector_class

    def known(self) -> list[str]:
        return sorted(self._types)

    def get(self, type_name: str) -> type[Connector]:
        if type_name in self._broken:
            raise ConfigError(f"connector type {type_name!r} could not be loaded ({self._broken[type_name]})")
        try:
            return self._types[type_name]
        except KeyError:
            hint = difflib.get_close_matches(type_name, self._types, n=1)
            maybe = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown connector type {type_name!r}; known types: {', '.join(self.known()) or 'none'}.{maybe}"
            ) from None

    def build(self, config: ConnectorConfig, secrets: Secrets, outbound: AllowList | None = None) -> Connector:
        """A connector from its configuration. `outbound` is the allow-list of the tenants it serves
        (`hub.config.connector_hosts.connector_allow_list`); without it only link-local and metadata
        addresses are refused. The connector finds it as `self.outbound`, and so do the HTTP
        clients and WSDL loaders it makes while it is built."""
        connector_class = self.get(config.type)
        try:
            options = connector_class.options_model.model_validate(config.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"connector {config.name!r} ({config.type}) has invalid options: {problems}") from None
        with building_with(outbound if outbound is not None else UNRESTRICTED):
            return connector_class(config.name, options, secrets)
