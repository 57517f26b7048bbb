"""Request dependencies: the hub's runtime, and the front-end client behind an API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.batching import IntakeBatcher
from hub.api.problems import Problem
from hub.config import Client
from hub.relay import Relay
from hub.runtime import Runtime

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


def get_client(
    runtime: Annotated[Runtime, Depends(get_runtime)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Client:
    challenge = {"WWW-Authenticate": 'Bearer realm="council-connector-hub"'}
    if credentials is None or not credentials.credentials:
        raise Problem(401, "unauthorized", "Send the client's API key as 'Authorization: Bearer <key>'.", headers=challenge)
    client = runtime.config.client_for_key(credentials.credentials)
    if client is None:
        raise Problem(401, "unauthorized", "This API key is not known to the hub.", headers=challenge)
    return client


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
RelayDep = Annotated["Relay | None", Depends(get_relay)]
ClientDep = Annotated[Client, Depends(get_client)]
BatcherDep = Annotated[IntakeBatcher, Depends(get_batcher)]
