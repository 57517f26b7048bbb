"""Personal data at rest: payloads sealed with Fernet, and the keyed digests that find a
resident's submissions without opening every payload.

Keys come from settings (HUB_ENCRYPTION_KEYS, newest first; HUB_INDEX_KEY). Where they are
not set, as in the demo, a development key is made once in the data directory (HUB_DATA_DIR,
`var/`) and a warning is logged; in production that is refused (hub.config.production).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.config.settings import Settings
from hub.errors import ConfigError, UnknownKey
from hub.logs import get_logger

log = get_logger("hub.privacy.sealing")


def dev_secret(settings: Settings, name: str, make: Any) -> str:
    """A development secret kept in the data directory (never in the repo), made on first use;
    never in production, where every key must be given."""
    if settings.environment == "production":
        raise ConfigError(f"HUB_ENVIRONMENT=production: {name} has no key set, and production never makes a development key")
    path = dev_key_path(settings, name)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        log.warning("development_key_created", path=str(path), hint="set the HUB_ setting in production")
    return path.read_text().strip()


UNKNOWN_KEY = (
    "the stored data cannot be opened with any key of HUB_ENCRYPTION_KEYS "
    "(was the key it was sealed with removed before `hub keys rotate` re-sealed everything?)"
)


@dataclass(frozen=True)
class Sealer:
    """Seals JSON values with the newest key; opens with any key still listed."""

    fernet: MultiFernet
    newest: Fernet

    @classmethod
    def from_keys(cls, keys: list[str]) -> Sealer:
        if not keys:
            raise ConfigError("HUB_ENCRYPTION_KEYS: give at least one Fernet key (make one with `hub keys new`)")
        try:
            fernets = [Fernet(key.encode()) for key in keys]
        except ValueError:
            raise ConfigError("HUB_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes (`hub keys new`)") from None
        return cls(MultiFernet(fernets), fernets[0])

    def seal(self, value: Any) -> str:
        return self.fernet.encrypt(orjson.dumps(value)).decode()

    def open(self, token: str) -> Any:
        try:
            return orjson.loads(self.fernet.decrypt(token.encode()))
        except InvalidToken:
            raise UnknownKey(UNKNOWN_KEY) from None

    def is_current(self, token: str) -> bool:
        """Whether the token is already sealed with the newest key (so a rotation may skip it)."""
        try:
            self.newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same value sealed again with the newest key (its original time is kept)."""
        try:
            return self.fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise UnknownKey(UNKNOWN_KEY) from None


def new_key() -> str:
    """A fresh Fernet key, for HUB_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


def encryption_keys(settings: Settings) -> list[str]:
    if settings.encryption_keys is not None:
        return [k for k in settings.encryption_keys.get_secret_value().replace(",", " ").split() if k]
    return [dev_secret(settings, "encryption.key", new_key)]


def sealer(settings: Settings) -> Sealer:
    return Sealer.from_keys(encryption_keys(settings))


def index_key(settings: Settings) -> bytes:
    if settings.index_key is not None:
        return settings.index_key.get_secret_value().encode()
    return dev_secret(settings, "index.key", lambda: os.urandom(32).hex()).encode()


def subject_digest(key: bytes, kind: str, value: str) -> str:
    """The keyed digest of one identifier of a resident (an e-mail address, normalised)."""
    normalised = value.strip().lower()
    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def dev_key_path(settings: Settings, name: str) -> Path:
    return settings.data_dir / name
