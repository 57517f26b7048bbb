"""Request dependencies: the hub's runtime, and the front-end client behind an API key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.batching import IntakeBatcher
from hub.api.problems import Problem
from hub.config import Client
from hub.relay import Relay
from hub.runtime import Runtime

Found = TypeVar("Found")
_bearer = HTTPBearer(auto_error=False, scheme_name="ClientApiKey", description="The front-end client's API key")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_relay(request: Request) -> Relay | None:
    relay: Relay | None = request.app.state.relay
    return relay


def get_batcher(request: Request) -> IntakeBatcher:
    batcher: IntakeBatcher = request.app.state.batcher
    return batcher


def bearer_identity(
    credentials: HTTPAuthorizationCredentials | None, lookup: Callable[[str], Found | None], what: str, realm: str
) -> Found:
    """Whoever the bearer token names (a front-end client, a member of staff), or a 401."""
    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}"'}
    if credentials is None or not credentials.credentials:
        raise Problem(401, "unauthorized", f"Send the {what} as 'Authorization: Bearer <token>'.", headers=challenge)
    found = lookup(credentials.credentials)
    if found is None:
        raise Problem(401, "unauthorized", f"This {what} is not known to the hub.", headers=challenge)
    return found


def get_client(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    return bearer_identity(credentials, runtime.config.client_for_key, "client's API key", "council-connector-hub")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RelayDep = Annotated["Relay | None", Depends(get_relay)]
ClientDep = Annotated[Client, Depends(get_client)]
BatcherDep = Annotated[IntakeBatcher, Depends(get_batcher)]
