"""Process settings, read once from the environment (HUB_*) and passed in.

Nothing else in the hub reads the environment: this is the one place.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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
    relay_sweep_seconds: float = Field(default=1.0, gt=0)
    worker_prefetch: int = Field(default=16, gt=0)

    demo_api_key: str | None = None
    demo_port: int = 8000
