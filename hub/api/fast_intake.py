"""The intake route's common case answered without FastAPI's per-request dependency solving,
router and exception middleware: the hottest request the hub serves,
`POST /v1/forms/{form_id}/submissions`.

The FastAPI route stays registered (it is what the OpenAPI document describes). A small ASGI
middleware in front of the router takes a POST that has no query string and a short enough
Idempotency-Key, and makes the same checks in the same order through the same code
(`submissions.accept_submission`, then `hub.intake.accept`); a failure is answered by the app's own exception handlers. It
lets everything else through (a `version`, a key over the limit, another method, another path),
which the FastAPI route then answers as before, validation errors and all.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.api.deps import (
    CLIENT_REALM,
    _bearer,
    bearer_identity,
    find_client,
    get_client_cache,
    get_limits,
    limited_identity,
    source_address,
)
from hub.api.routes import submissions
from hub.config.files import Client
from hub.runtime import Runtime

# the FastAPI route's Header(max_length=...) for Idempotency-Key
KEY_MAX_LENGTH = 255


def _key_too_long(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return len(value) > KEY_MAX_LENGTH  # the first one counts, as in Starlette's Headers.get
    return False


_PATH = re.compile(r"/v1/forms/([^/]+)/submissions")


class DirectIntake:
    """The middleware: answers the requests the direct endpoint answers exactly as the FastAPI
    route would, and passes every other one on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string"):
            path: str = scope["path"]
            root = scope.get("root_path", "")
            matched = _PATH.fullmatch(path[len(root):] if root and path.startswith(root) else path)
            if matched is not None and not _key_too_long(scope):
                scope["path_params"] = {"form_id": matched.group(1)}
                request = Request(scope, receive, send)
                try:
                    # a flood is shed here, before the key is looked up or the body read: each
                    # refusal costs the event loop as little as it can, so what is taken stays quick
                    scope["app"].state.intake.refuse_if_full()
                    response = await submit(request)
                except Exception as exc:
                    handler = _handler(scope["app"], exc)
                    if handler is None:  # the server-error middleware outside answers it, as for any route
                        raise
                    response = await handler(request, exc)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _handler(app: Starlette, exc: Exception) -> Any:
    """The app's handler for this exception, as Starlette's exception middleware would pick it
    (the catch-all for Exception belongs to the server-error middleware, so it is left to it)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in app.exception_handlers:
            return app.exception_handlers[cls]
    return None


async def _client(request: Request, runtime: Runtime) -> Client:
    """As `deps.get_client`: a configured key is found in memory; a stored one may need the
    database (through the cache), so that lookup runs in a thread as FastAPI would run it.
    Either way the rate limits are spent as there (hub.api.ratelimit)."""
    rate_limits = get_limits(request)
    rate_limits.check_source(source_address(request))
    credentials = await _bearer(request)
    if credentials is not None and credentials.credentials:
        configured = runtime.config.client_for_key(credentials.credentials)
        if configured is not None:
            rate_limits.check_client(configured)
            return configured
    cache = get_client_cache(request)
    client = await run_in_threadpool(
        limited_identity, request, lambda: bearer_identity(
            credentials, lambda key: find_client(runtime, cache, key), "client's API key", CLIENT_REALM)
    )
    rate_limits.check_client(client)
    return client


async def submit(request: Request) -> Response:
    state = request.app.state
    client = await _client(request, state.runtime)
    return await submissions.accept_submission(
        request, state.intake, client, request.path_params["form_id"], None, request.headers.get("idempotency-key")
    )


def install(app: FastAPI) -> None:
    """Puts the direct endpoint in front of the router (the FastAPI route stays for the rest).
    A middleware added to the app before this call would sit inside it and never see these
    requests; one added after it sits outside and sees every request."""
    app.add_middleware(DirectIntake)
