"""Front-end clients kept in the database (made by `hub clients create` or the admin API): only
each key's SHA-256 and first characters are stored; the key itself is shown once, at creation.

A rotation gives a stored client a new key and keeps the one it replaced working for a grace
period (`rotate`), so the front end can switch over without a failed request.

Clients in the configuration files are unchanged; an id is either configured or stored, never both.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.config.files import Client, HubConfig, hash_api_key
from hub.errors import Conflict
from hub.intake.forms import FormRegistry
from hub.store import audit
from hub.store.tables import api_clients

# a short, recognisable start, so a leaked key is easy to find in code and logs (secret scanners)
KEY_PREFIX = "cch_"
_SHOWN = len(KEY_PREFIX) + 4
_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class StoredClient:
    id: str
    tenant: str
    name: str
    forms: tuple[str, ...]
    key_prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    previous_key_prefix: str | None = None
    previous_key_expires_at: datetime | None = None
    rotated_at: datetime | None = None
    # found by the key a rotation replaced (by_digest): it works only until previous_key_expires_at
    by_previous_key: bool = False

    def key_expires_at(self) -> datetime | None:
        """When the key this client was found by stops working (None: it does not expire)."""
        if not self.by_previous_key:
            return self.expires_at
        ends = [t for t in (self.previous_key_expires_at, self.expires_at) if t is not None]
        return min(ends) if ends else None

    def state(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        expires = self.key_expires_at()
        if expires is not None and expires <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def previous_key_valid(self, now: datetime | None = None) -> bool:
        """Whether the key a rotation replaced still works."""
        return (self.revoked_at is None and self.previous_key_expires_at is not None
                and self.previous_key_expires_at > (now or datetime.now(UTC)))

    def as_client(self) -> Client:
        return Client(id=self.id, tenant=self.tenant, name=self.name, forms=self.forms)

    def as_dict(self) -> dict[str, Any]:
        """What staff may see: never the key, only its first characters."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id, "tenant": self.tenant, "name": self.name, "forms": list(self.forms),
            "key_prefix": self.key_prefix, "state": self.state(), "created_at": iso(self.created_at),
            "created_by": self.created_by, "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at), "revoked_by": self.revoked_by, "source": "database",
            "rotated_at": iso(self.rotated_at), "previous_key_prefix": self.previous_key_prefix if self.previous_key_valid() else None,
            "previous_key_expires_at": iso(self.previous_key_expires_at) if self.previous_key_valid() else None,
        }


def _from_row(row: Any, by_previous_key: bool = False) -> StoredClient:
    return StoredClient(
        row.id, row.tenant, row.name, tuple(row.forms), row.key_prefix, row.created_at,
        row.created_by, row.expires_at, row.revoked_at, row.revoked_by,
        row.previous_key_prefix, row.previous_key_expires_at, row.rotated_at, by_previous_key,
    )


@dataclass(frozen=True)
class NewClient:
    id: str
    tenant: str
    name: str = ""
    forms: tuple[str, ...] = ("*",)
    expires_in_days: int | None = None


def problems(new: NewClient, config: HubConfig, forms: FormRegistry | None = None) -> list[tuple[str, str]]:
    """(field, what is wrong) for a client that cannot be made as asked; empty when it can."""
    found: list[tuple[str, str]] = []
    if not re.fullmatch(_ID, new.id):
        found.append(("id", "use lower-case letters, digits and hyphens (at most 63), starting with a letter or digit"))
    elif new.id in config.clients:
        found.append(("id", f"client {new.id!r} is defined in the configuration files; choose another id"))
    tenant = config.tenants.get(new.tenant)
    if tenant is None:
        found.append(("tenant", f"no tenant {new.tenant!r}; known: {', '.join(sorted(config.tenants))}"))
    if not new.forms:
        found.append(("forms", "name at least one form, or * for every form the tenant offers"))
    for index, form_id in enumerate(new.forms):
        if form_id == "*":
            continue
        if forms is not None and form_id not in forms.ids():
            found.append((f"forms/{index}", f"the hub has no form {form_id!r}"))
        elif tenant is not None and not tenant.offers(form_id):
            found.append((f"forms/{index}", f"tenant {tenant.id!r} does not offer form {form_id!r}"))
    if new.expires_in_days is not None and not 1 <= new.expires_in_days <= 3650:
        found.append(("expires_in_days", "give a number of days from 1 to 3650"))
    return found


class ClientExists(Conflict):
    """A client with this id is already stored."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"A client {client_id!r} is already stored.")
        self.client_id = client_id


def create(engine: Engine, new: NewClient, actor: str) -> tuple[StoredClient, str]:
    """Stores the client with a new key and audits it; returns the client and the key (shown once).
    Check `problems` first: this only refuses an id that is already stored."""
    key = new_key()
    now = datetime.now(UTC)
    expires = now + timedelta(days=new.expires_in_days) if new.expires_in_days else None
    values = {
        "id": new.id, "tenant": new.tenant, "name": new.name, "forms": list(new.forms),
        "key_sha256": hash_api_key(key), "key_prefix": key[:_SHOWN], "created_at": now,
        "created_by": actor, "expires_at": expires,
    }
    try:
        with engine.begin() as conn:
            if conn.execute(select(api_clients.c.id).where(api_clients.c.id == new.id)).first() is not None:
                raise ClientExists(new.id)
            conn.execute(insert(api_clients).values(**values))
            detail = {"name": new.name, "forms": list(new.forms), "key_prefix": key[:_SHOWN], "expires_at": expires.isoformat() if expires else None}
            audit.record(conn, actor, new.tenant, "client.create", f"client:{new.id}", detail)
    except IntegrityError:
        raise ClientExists(new.id) from None
    stored = get(engine, new.id)
    assert stored is not None
    return stored, key


def revoke(engine: Engine, client_id: str, actor: str, tenant: str | None = None) -> StoredClient | None:
    """Revokes the client's key and audits it; None when there is no such client (for `tenant`,
    when given). Revoking a revoked client changes nothing and writes nothing."""
    with engine.begin() as conn:
        row = _row(conn, client_id, tenant)
        if row is None:
            return None
        if row.revoked_at is None:
            now = datetime.now(UTC)
            conn.execute(update(api_clients).where(api_clients.c.id == client_id).values(revoked_at=now, revoked_by=actor))
            audit.record(conn, actor, row.tenant, "client.revoke", f"client:{client_id}", {"key_prefix": row.key_prefix})
    return get(engine, client_id)


class ClientRevoked(Conflict):
    """The client's key was revoked: a revoked client is not given a new key (make another client)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"Client {client_id!r} was revoked; make a new client instead.")
        self.client_id = client_id


def _row(conn: Connection, client_id: str, tenant: str | None) -> Any:
    """The stored client's row (only `tenant`'s, when given), or None."""
    query = select(api_clients).where(api_clients.c.id == client_id)
    if tenant is not None:
        query = query.where(api_clients.c.tenant == tenant)
    return conn.execute(query).first()


def rotate(engine: Engine, client_id: str, actor: str, grace: timedelta, tenant: str | None = None) -> tuple[StoredClient, str] | None:
    """Gives the client a new key (returned, to be shown once) and keeps its current key working
    for `grace`; a key an earlier rotation replaced stops now. The new key lasts as long as the
    one it replaces did (an expiring client keeps its lifetime). Audited; None when there is no
    such client (for `tenant`, when given); ClientRevoked for a revoked one."""
    key = new_key()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        row = _row(conn, client_id, tenant)
        if row is None:
            return None
        if row.revoked_at is not None:
            raise ClientRevoked(client_id)
        expires = row.expires_at
        if expires is not None:
            expires = now + (expires - (row.rotated_at or row.created_at))
        previous_expires = now + grace
        conn.execute(update(api_clients).where(api_clients.c.id == client_id).values(
            key_sha256=hash_api_key(key), key_prefix=key[:_SHOWN], expires_at=expires, rotated_at=now,
            previous_key_sha256=row.key_sha256, previous_key_prefix=row.key_prefix, previous_key_expires_at=previous_expires,
        ))
        detail = {"key_prefix": key[:_SHOWN], "previous_key_prefix": row.key_prefix,
                  "previous_key_expires_at": previous_expires.isoformat(), "expires_at": expires.isoformat() if expires else None}
        audit.record(conn, actor, row.tenant, "client.rotate", f"client:{client_id}", detail)
    stored = get(engine, client_id)
    assert stored is not None
    return stored, key


def revoke_previous(engine: Engine, client_id: str, actor: str, tenant: str | None = None) -> StoredClient | None:
    """Ends the grace period of the key a rotation replaced: it stops working now. Audited when
    it was still working; None when there is no such client (for `tenant`, when given)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        row = _row(conn, client_id, tenant)
        if row is None:
            return None
        if row.previous_key_expires_at is not None and row.previous_key_expires_at > now:
            conn.execute(update(api_clients).where(api_clients.c.id == client_id).values(previous_key_expires_at=now))
            audit.record(conn, actor, row.tenant, "client.revoke_previous_key", f"client:{client_id}", {"key_prefix": row.previous_key_prefix})
    return get(engine, client_id)


def get(engine: Engine, client_id: str) -> StoredClient | None:
    with engine.connect() as conn:
        row = conn.execute(select(api_clients).where(api_clients.c.id == client_id)).first()
    return _from_row(row) if row is not None else None


def listing(engine: Engine, tenant: str | None = None) -> list[StoredClient]:
    query = select(api_clients).order_by(api_clients.c.tenant, api_clients.c.id)
    if tenant is not None:
        query = query.where(api_clients.c.tenant == tenant)
    with engine.connect() as conn:
        return [_from_row(r) for r in conn.execute(query).all()]


def by_digest(engine: Engine, digest: str) -> StoredClient | None:
    """The client whose current key, or whose key a rotation replaced, has this digest."""
    with engine.connect() as conn:
        row = conn.execute(select(api_clients).where(api_clients.c.key_sha256 == digest)).first()
        if row is not None:
            return _from_row(row)
        row = conn.execute(select(api_clients).where(api_clients.c.previous_key_sha256 == digest)).first()
    return _from_row(row, by_previous_key=True) if row is not None else None


class ClientCache:
    """Stored clients by key digest, each kept at most `max_age` seconds, so authenticating a
    busy front end rarely reaches the database and a revoked key stops working within `max_age`.
    Unknown digests are remembered too (a flood of bad keys costs one query per key)."""

    def __init__(self, engine: Engine, max_age: float, size: int = 10_000) -> None:
        self.engine = engine
        self.max_age = max_age
        self.size = size
        self._found: OrderedDict[str, tuple[float, StoredClient | None]] = OrderedDict()
        self._lock = threading.Lock()

    def find(self, key: str) -> StoredClient | None:
        digest = hash_api_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._found.get(digest)
        if cached is not None and now - cached[0] < self.max_age:
            return cached[1]
        stored = by_digest(self.engine, digest)
        with self._lock:
            self._found[digest] = (now, stored)
            self._found.move_to_end(digest)
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return stored

    def forget(self, client_id: str) -> None:
        """Drops a client at once (it was revoked in this process)."""
        with self._lock:
            for digest in [d for d, (_, c) in self._found.items() if c is not None and c.id == client_id]:
                del self._found[digest]
