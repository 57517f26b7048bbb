"""Personal data at rest: payloads sealed with Fernet, and the keyed digests that find a
resident's submissions without opening every payload.

Keys come from settings (HUB_ENCRYPTION_KEYS, newest first; HUB_INDEX_KEY). Where they are
not set, as in the demo, a development key is made once in var/ and a warning is logged.
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

from hub.errors import ConfigError
from hub.logs import get_logger
from hub.settings import REPO_ROOT, Settings

log = get_logger("hub.crypto")
DEV_KEY_DIR = REPO_ROOT / "var"


def _dev_secret(name: str, make: Any) -> str:
    """A development secret kept in var/ (never in the repo), made on first use."""
    path = DEV_KEY_DIR / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        log.warning("development_key_created", path=str(path), hint="set the HUB_ setting in production")
    return path.read_text().strip()


@dataclass(frozen=True)
class Sealer:
    """Seals JSON values with the newest key; opens with any key still listed."""

    fernet: MultiFernet

    @classmethod
    def from_keys(cls, keys: list[str]) -> Sealer:
        if not keys:
            raise ConfigError("HUB_ENCRYPTION_KEYS: give at least one Fernet key (make one with `hub keys new`)")
        try:
            return cls(MultiFernet([Fernet(key.encode()) for key in keys]))
        except ValueError:
            raise ConfigError("HUB_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes (`hub keys new`)") from None

    def seal(self, value: Any) -> str:
        return self.fernet.encrypt(orjson.dumps(value)).decode()

    def open(self, token: str) -> Any:
        try:
            return orjson.loads(self.fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ConfigError("a stored payload cannot be opened with any of HUB_ENCRYPTION_KEYS") from None

    def rotate(self, token: str) -> str:
        """The same value sealed again with the newest key."""
        return self.fernet.rotate(token.encode()).decode()


def encryption_keys(settings: Settings) -> list[str]:
    if settings.encryption_keys is not None:
        return [k for k in settings.encryption_keys.get_secret_value().replace(",", " ").split() if k]
    return [_dev_secret("encryption.key", lambda: Fernet.generate_key().decode())]


def sealer(settings: Settings) -> Sealer:
    return Sealer.from_keys(encryption_keys(settings))


def index_key(settings: Settings) -> bytes:
    if settings.index_key is not None:
        return settings.index_key.get_secret_value().encode()
    return _dev_secret("index.key", lambda: os.urandom(32).hex()).encode()


def subject_digest(key: bytes, kind: str, value: str) -> str:
    """The keyed digest of one identifier of a resident (an e-mail address, normalised)."""
    normalised = value.strip().lower()
    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def dev_key_path(name: str) -> Path:
    return DEV_KEY_DIR / name
