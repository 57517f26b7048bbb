"""Process settings, read once from the environment (HUB_*) and passed in.

Nothing else in the hub reads the environment: this is the one place.
"""

from __future__ import annotations

from pathlib import Path

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    database_url: str = f"sqlite:///{REPO_ROOT / 'var' / 'hub.db'}"
    broker_url: str = "memory://"
    config_dir: Path = REPO_ROOT / "config"
    schemas_dir: Path = REPO_ROOT / "schemas"
    mappings_dir: Path = REPO_ROOT / "mappings"
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # checked before schema validation, so a hostile payload costs little
    max_depth: int = Field(default=32, gt=0, le=1000)
    max_string_length: int = Field(default=100_000, gt=0)
    log_level: str = "info"
    log_json: bool = True

    exchange: str = "hub.deliveries"
    queue_prefix: str = "hub."
    # quorum queues on RabbitMQ; the in-process transport ignores queue arguments
    quorum_queues: bool = True
    delivery_limit: int = Field(default=20, gt=0)
    broker_connect_timeout: float = Field(default=5.0, gt=0)

    relay_batch: int = Field(default=500, gt=0)
    # deliveries for one connector that share a message: fewer messages for the broker to store,
    # and for the relay and workers to frame and acknowledge (1: one message per delivery)
    relay_deliveries_per_message: int = Field(default=10, gt=0, le=100)
    relay_sweep_seconds: float = Field(default=1.0, gt=0)
    worker_prefetch: int = Field(default=16, gt=0)

    # personal data: Fernet keys for payloads at rest, newest first (comma or space separated);
    # HMAC key for the index of residents' identifiers. Unset: development keys in var/.
    encryption_keys: SecretStr | None = None
    index_key: SecretStr | None = None
    # front-end keys made by `hub clients create` are read from the database through a cache
    # this many seconds old at most (so a revoked key stops working within it)
    client_cache_seconds: float = Field(default=5.0, ge=0)

    # staff sign-in: "local" tokens from the staff section (development), "oidc" through the
    # council's identity provider, or both
    staff_auth: Literal["local", "oidc", "both"] = "local"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid email profile"
    # signs the hub's own staff session tokens after an OIDC sign-in
    session_key: SecretStr | None = None
    session_seconds: int = Field(default=8 * 3600, gt=0)

    # background work in `hub worker`: retention purge, status polling, webhook sending
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    poll_interval_seconds: float = Field(default=300.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)

    demo_api_key: str | None = None
    demo_port: int = 8000
