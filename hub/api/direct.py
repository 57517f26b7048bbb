"""The intake route's common case answered without FastAPI's per-request dependency solving and
thread hand-offs: the hottest request the hub serves, `POST /v1/forms/{form_id}/submissions`.

The FastAPI route stays registered (it is what the OpenAPI document describes). A plain Starlette
route in front of it takes a POST that has no query string and a short enough Idempotency-Key,
and makes the same checks in the same order through the same code (`intake.accept_submission`).
It does not match anything else (a `version`, a key over the limit, another method), which the
FastAPI route then answers as before, validation errors and all.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from hub.api import intake
from hub.api.deps import CLIENT_REALM, _bearer, bearer_identity, find_client, get_client_cache
from hub.config import Client
from hub.runtime import Runtime

PATH = "/v1/forms/{form_id}/submissions"
# the FastAPI route's Header(max_length=...) for Idempotency-Key
KEY_MAX_LENGTH = 255


def _key_too_long(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return len(value) > KEY_MAX_LENGTH  # the first one counts, as in Starlette's Headers.get
    return False


class DirectRoute(Route):
    """Matches only the requests the direct endpoint answers exactly as the FastAPI route would."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("query_string") or _key_too_long(scope):
            return Match.NONE, {}
        return super().matches(scope)


async def _client(request: Request, runtime: Runtime) -> Client:
    """As `deps.get_client`: a configured key is found in memory; a stored one may need the
    database (through the cache), so that lookup runs in a thread as FastAPI would run it."""
    credentials = await _bearer(request)
    if credentials is not None and credentials.credentials:
        configured = runtime.config.client_for_key(credentials.credentials)
        if configured is not None:
            return configured
    cache = get_client_cache(request)
    return await run_in_threadpool(
        bearer_identity, credentials, lambda key: find_client(runtime, cache, key), "client's API key", CLIENT_REALM
    )


async def submit(request: Request) -> Response:
    state = request.app.state
    runtime: Runtime = state.runtime
    client = await _client(request, runtime)
    return await intake.accept_submission(
        request, runtime, state.relay, state.batcher, client, request.path_params["form_id"], None,
        request.headers.get("idempotency-key"),
    )


def install(app: FastAPI) -> None:
    """Puts the direct route in front of every other (the FastAPI one stays for the rest)."""
    app.router.routes.insert(0, DirectRoute(PATH, submit, methods=["POST"], include_in_schema=False))
