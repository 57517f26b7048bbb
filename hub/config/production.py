"""What a production start refuses (HUB_ENVIRONMENT=production), each naming the setting or the
configuration entry to change: development keys, demo keys and default secrets, the embedded
broker and database, an identity provider not on HTTPS, and connectors that deliver nowhere.

Development (the default) starts with whatever is missing made up in the data directory; a
council's production hub must be given every key and its real servers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hub.config.files import HubConfig
from hub.config.settings import Settings
from hub.errors import ConfigError

# a key shorter than this is a placeholder, not a secret
MIN_SECRET_LENGTH = 32
# connector types that keep records in the process's memory (connectors.testing) instead of delivering them
MEMORY_CONNECTOR_TYPES = ("recording",)


def problems(settings: Settings, config: HubConfig | None = None) -> list[str]:
    """Everything that stops this process starting in production; empty in development."""
    if settings.environment != "production":
        return []
    found: list[str] = [
        f"{name} is given both as {name} and as {name}_FILE: give it one way only" for name in settings.secrets_given_twice()
    ]
    for name, value in (("HUB_ENCRYPTION_KEYS", settings.encryption_keys), ("HUB_INDEX_KEY", settings.index_key),
                        ("HUB_SESSION_KEY", settings.session_key)):
        if value is None or not value.get_secret_value().strip():
            found.append(f"{name} is not set: production never makes a development key (`hub keys new` makes one)")
        elif name != "HUB_ENCRYPTION_KEYS" and len(value.get_secret_value().strip()) < MIN_SECRET_LENGTH:
            found.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters: use a random secret")
    if settings.demo_api_key is not None:
        found.append("HUB_DEMO_API_KEY is set: the demo's client key has no place in production")
    if settings.broker_url.startswith("memory://"):
        found.append("HUB_BROKER_URL is the in-process broker (memory://), which loses queued deliveries when the "
                     "process stops: point it at RabbitMQ (amqp://...)")
    if settings.database_url.startswith("sqlite"):
        found.append("HUB_DATABASE_URL is the demo's SQLite file: point it at PostgreSQL (postgresql+psycopg://...)")
    if settings.staff_auth in ("oidc", "both"):
        issuer = settings.oidc_issuer or ""
        if urlsplit(issuer).scheme != "https":
            found.append(f"HUB_OIDC_ISSUER must be an https:// URL in production, not {issuer or 'unset'}")
        if settings.oidc_client_secret is None:
            found.append("HUB_OIDC_CLIENT_SECRET is not set")
    if config is not None:
        found.extend(
            f"client {client.id!r} takes its API key from {client.api_key_env} (api_key_env is for development): "
            "give it api_key_sha256, or store it with `hub clients create`"
            for client in config.clients.values() if client.api_key_env
        )
        found.extend(
            f"staff {member.id!r} takes a token from {member.token_env} (token_env is for development): "
            "give it token_sha256, or sign staff in with OpenID Connect"
            for member in config.staff.values() if member.token_env
        )
        found.extend(
            f"connector {connector.name!r} is of type {connector.type}, which keeps residents' submissions in memory "
            "and loses them when the process stops: give it a real back office"
            for connector in config.connectors.values() if connector.type in MEMORY_CONNECTOR_TYPES
        )
        found.extend(_payment_problems(settings))
    return found


def _payment_problems(settings: Settings) -> list[str]:
    """Forms with a fee (docs/payments.md) need GOV.UK Pay's key and an https:// address."""
    from hub.payments.config import load_fees

    if not load_fees(settings.config_dir).forms:
        return []
    found = []
    if settings.pay_api_key is None or not settings.pay_api_key.get_secret_value().strip():
        found.append("HUB_PAY_API_KEY is not set, and config/payments/payments.yaml gives forms a fee")
    if urlsplit(settings.pay_url).scheme != "https":
        found.append(f"HUB_PAY_URL must be an https:// URL in production, not {settings.pay_url}")
    return found


def ensure_ready(settings: Settings, config: HubConfig | None = None) -> None:
    """Raises ConfigError listing every problem of `problems`."""
    found = problems(settings, config)
    if found:
        raise ConfigError("HUB_ENVIRONMENT=production refuses to start:\n" + "\n".join(f"- {p}" for p in found))
