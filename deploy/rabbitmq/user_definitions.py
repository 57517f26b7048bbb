"""Writes deploy/rabbitmq/user.json, the RabbitMQ definitions of the hub's broker user, from the
user and password in HUB_BROKER_URL of deploy/hub.env, so the password lives in one file only.

    python3 deploy/rabbitmq/user_definitions.py [deploy/hub.env]

The file holds a salted SHA-256 hash (RabbitMQ's rabbit_password_hashing_sha256), never the
password; git ignores it. Run it again after changing the password, then restart rabbitmq.
Standard library only, so any Python 3.11 runs it, with or without the hub installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
ENV_FILE = HERE.parent / "hub.env"
USER_FILE = HERE / "user.json"
PLACEHOLDER = "CHANGE-ME"


def env_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file as Compose reads them (no quotes, no expansion)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's hash: base64(salt + SHA-256(salt + UTF-8 password)), with a 4-byte random salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def user_definitions(broker_url: str) -> dict[str, list[dict[str, Any]]]:
    """The definitions of the user HUB_BROKER_URL connects as; ValueError names what is wrong."""
    parts = urlsplit(broker_url)
    if parts.scheme not in ("amqp", "amqps") or not parts.username or not parts.password:
        raise ValueError("HUB_BROKER_URL must be amqp://USER:PASSWORD@HOST:5672/VHOST")
    password = unquote(parts.password)
    if PLACEHOLDER in password:
        raise ValueError(f"the password in HUB_BROKER_URL is still the {PLACEHOLDER} placeholder (docs/deploy.md: secrets)")
    user = {"name": unquote(parts.username), "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
    return {"users": [user]}


def main(argv: list[str]) -> int:
    env_file = Path(argv[1]) if len(argv) > 1 else ENV_FILE
    try:
        definitions = user_definitions(env_values(env_file).get("HUB_BROKER_URL", ""))
    except (OSError, ValueError) as exc:
        print(f"{env_file}: {exc}", file=sys.stderr)
        return 1
    # world-readable: the broker runs as its own user and reads this through a bind mount; it holds
    # a salted hash of a long random password, not the password
    USER_FILE.write_text(json.dumps(definitions, indent=2) + "\n", encoding="utf-8")
    USER_FILE.chmod(0o644)
    print(f"wrote {USER_FILE} for user {definitions['users'][0]['name']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
