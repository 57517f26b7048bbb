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
from hub.attachments.links import LinkSigner, link_key
from hub.attachments.storage import BlobStore, store_from_settings
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
    _attachment_store: BlobStore | None = None
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
    def attachment_store(self) -> BlobStore:
        """Where uploaded attachments are kept, sealed with the payload keys: under HUB_DATA_DIR,
        or in the S3-compatible bucket HUB_ATTACHMENT_STORE=s3 names. Built once."""
        with self._lock:
            if self._attachment_store is None:
                self._attachment_store = self._build_attachment_store()
            return self._attachment_store

    def use_attachment_store(self, store: BlobStore) -> None:
        """Puts another store in place (a test's own)."""
        with self._lock:
            self._attachment_store = store

    def _build_attachment_store(self) -> BlobStore:
        return store_from_settings(self.settings, self.sealer.fernet)

    @property
    def attachment_links(self) -> LinkSigner:
        """Signs the expiring content links back offices fetch (HUB_ATTACHMENT_URL_KEY)."""
        configured = self.settings.attachment_url_key
        key = link_key(configured.get_secret_value() if configured else None, self.index_key)
        return LinkSigner(key, self.settings.public_url, self.settings.attachment_url_seconds)

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
