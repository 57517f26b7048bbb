"""Request dependencies: the hub's runtime, and the front-end client behind an API key.

A key is looked up in the configuration files first, then among the clients stored in the
database (through a short cache); an expired or revoked stored key is refused saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.ratelimit import RateLimits
from hub.auth.sessions import session_secret
from hub.config.files import Client
from hub.errors import Unauthorized
from hub.intake.accept import Intake
from hub.relay.outbox_relay import Relay
from hub.runtime import Runtime
from hub.store.clients import ClientCache

Found = TypeVar("Found")
_bearer = HTTPBearer(auto_error=False, scheme_name="ClientApiKey", description="The front-end client's API key")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_relay(request: Request) -> Relay | None:
    relay: Relay | None = request.app.state.relay
    return relay


def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


def get_client_cache(request: Request) -> ClientCache:
    """The app's cache of stored clients (made here for an app assembled without create_app)."""
    cache: ClientCache | None = getattr(request.app.state, "clients", None)
    if cache is None:
        runtime: Runtime = request.app.state.runtime
        cache = request.app.state.clients = ClientCache(runtime.engine, runtime.settings.client_cache_seconds)
    return cache


def get_limits(request: Request) -> RateLimits:
    """The app's rate limits (made here for an app assembled without create_app)."""
    found: RateLimits | None = getattr(request.app.state, "limits", None)
    if found is None:
        runtime: Runtime = request.app.state.runtime
        found = request.app.state.limits = RateLimits(runtime.settings, runtime.config)
    return found


def source_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limited_identity(request: Request, find: Callable[[], Found]) -> Found:
    """`find()` (a bearer_identity call) behind the brake on failed sign-ins from the request's
    address: refused at once while that address waits; a 401 is counted (and may become a 429)."""
    rate_limits, address = get_limits(request), source_address(request)
    rate_limits.check_source(address)
    try:
        return find()
    except Unauthorized:
        rate_limits.failed(address)
        raise


def get_session_secret(request: Request) -> bytes:
    """The key staff sessions are signed with, read once per app (settings may name it)."""
    secret: bytes | None = getattr(request.app.state, "session_secret", None)
    if secret is None:
        runtime: Runtime = request.app.state.runtime
        secret = request.app.state.session_secret = session_secret(runtime.settings)
    return secret


def challenge(realm: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="{realm}"'}


def bearer_identity(
    credentials: HTTPAuthorizationCredentials | None, lookup: Callable[[str], Found | None], what: str, realm: str
) -> Found:
    """Whoever the bearer token names (a front-end client, a member of staff), or a 401."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized(f"Send the {what} as 'Authorization: Bearer <token>'.", headers=challenge(realm))
    found = lookup(credentials.credentials)
    if found is None:
        raise Unauthorized(f"This {what} is not known to the hub.", headers=challenge(realm))
    return found


CLIENT_REALM = "council-connector-hub"


def find_client(runtime: Runtime, cache: ClientCache, key: str) -> Client | None:
    """The client an API key belongs to, or None; a stored key that expired or was revoked is
    answered with a 401 saying which (the key itself is never repeated)."""
    configured = runtime.config.client_for_key(key)
    if configured is not None:
        return configured
    stored = cache.find(key)
    if stored is None:
        return None
    state = stored.state()
    if state == "revoked":
        when = stored.revoked_at.date().isoformat() if stored.revoked_at else "?"
        raise Unauthorized(f"This API key was revoked on {when}; ask the council for a new one.", headers=challenge(CLIENT_REALM))
    if state == "expired":
        expired = stored.key_expires_at()
        when = expired.date().isoformat() if expired else "?"
        raise Unauthorized(f"This API key expired on {when}; ask the council for a new one.", headers=challenge(CLIENT_REALM))
    return stored.as_client()


def get_client(
    request: Request,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    cache: Annotated[ClientCache, Depends(get_client_cache)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    client = limited_identity(request, lambda: bearer_identity(
        credentials, lambda key: find_client(runtime, cache, key), "client's API key", CLIENT_REALM))
    get_limits(request).check_client(client)
    return client


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RelayDep = Annotated["Relay | None", Depends(get_relay)]
ClientDep = Annotated[Client, Depends(get_client)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
