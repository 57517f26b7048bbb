"""Everything a hub process needs, built once from settings: configuration, forms, routes,
mappings, connectors and the database engine.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from connectors.base import Connector, Secrets
from connectors.registry import ConnectorRegistry
from hub.attachments.storage import FileStore
from hub.config import production
from hub.config.connector_hosts import connector_allow_list, outbound_problems
from hub.config.files import HubConfig, load_config
from hub.config.settings import Settings
from hub.delivery.mapping import RecordMapping, load_mappings
from hub.errors import ConfigError
from hub.intake.forms import FormRegistry, load_forms
from hub.intake.routing import Router
from hub.privacy.sealing import Sealer, index_key, sealer
from hub.relay.transport import Transport, transport_for
from hub.store.db import make_engine


@dataclass
class Runtime:
    settings: Settings
    config: HubConfig
    forms: FormRegistry
    router: Router
    mappings: dict[tuple[str, str], RecordMapping]
    registry: ConnectorRegistry
    secrets: Secrets
    engine: Engine
    transport: Transport
    # seals payloads at rest; the key of the index of residents' identifiers
    sealer: Sealer
    index_key: bytes
    _connectors: dict[str, Connector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls,
        settings: Settings,
        environ: Mapping[str, str],
        registry: ConnectorRegistry | None = None,
        config: HubConfig | None = None,
    ) -> Runtime:
        config = config or load_config(settings.config_dir, environ, settings.standards_dir)
        production.ensure_ready(settings, config)
        # a connector pointed at a host its tenants do not allow stops the process at start-up
        refused = outbound_problems(config, environ, settings.config_dir)
        if refused:
            raise ConfigError("\n".join(problem.message for problem in refused))
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            config=config,
            forms=load_forms(settings.schemas_dir, settings.standards_dir),
            router=Router(config),
            mappings=load_mappings(settings.mappings_dir),
            registry=registry or ConnectorRegistry.from_entry_points(),
            secrets=Secrets(environ),
            engine=engine,
            transport=transport_for(settings, engine),
            sealer=sealer(settings),
            index_key=index_key(settings),
        )

    def connector(self, name: str) -> Connector:
        """The live connector for a configured name, built on first use and then reused."""
        with self._lock:
            if name not in self._connectors:
                config = self.config.connectors[name]
                self._connectors[name] = self.registry.build(config, self.secrets, connector_allow_list(self.config, config))
            return self._connectors[name]

    @property
    def attachment_store(self) -> FileStore:
        """Where uploaded attachments are kept: under HUB_DATA_DIR, sealed with the payload keys."""
        return FileStore(self.settings.data_dir / "attachments", self.sealer.fernet)

    def connector_names(self) -> list[str]:
        return sorted(self.config.connectors)

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self._connectors.clear()
        self.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {
            "forms": self.forms.ids(),
            "connectors": self.connector_names(),
            "tenants": sorted(self.config.tenants),
        }
