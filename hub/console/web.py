"""How every console page is answered: Jinja2 templates on GOV.UK Frontend, the security headers
on every /console response, and errors as pages (a 403, a 404) rather than JSON problems.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/console"
# no inline script or style anywhere: console.js marks the page js-enabled (docs/console.md)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
SERVICE_NAME = "Council Connector Hub"
# `__Host-`: Secure, Path=/ and no Domain, so no other host or path can set or shadow it
COOKIE = "__Host-hub_console"
LOGIN_COOKIE = "__Host-hub_console_login"

templates = Environment(loader=PackageLoader("hub.console", "templates"), autoescape=select_autoescape(["html"]), auto_reload=False)


class SecurityHeaders:
    """Adds the console's headers to every response under /console (static files included);
    a pure ASGI layer, so the rest of the app pays one string comparison."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(PREFIX + "/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k.lower().encode() not in present]
                if not static and b"cache-control" not in present:
                    # every page shows what a member of staff may see: never kept by a browser or proxy
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class ConsoleError(Exception):
    """A page saying what went wrong, with its status (403, 404, 400)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class SignInNeeded(Exception):
    """No console session, or an expired one: off to the sign-in page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def page(request: Request, template: str, status: int = 200, cookie: str | None = None, **context: Any) -> HTMLResponse:
    """A rendered page; `cookie` is the console session re-signed for this request (idle timeout)."""
    body = templates.get_template(template).render(request=request, service_name=SERVICE_NAME, **context)
    response = HTMLResponse(body, status_code=status)
    if cookie is not None:
        set_cookie(response, cookie)
    return response


def set_cookie(response: Response, token: str) -> None:
    # a session cookie (no Max-Age): the token's own expiry is the idle and absolute timeout
    response.set_cookie(COOKIE, token, path="/", secure=True, httponly=True, samesite="lax")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def console_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    signed = getattr(request.state, "console", None)
    # signed in: the error page renews the session like any other page
    cookie = signed.session.token if signed is not None else None
    return page(request, "error.html", status=exc.status, cookie=cookie, title=exc.title, message=exc.message, signed=signed)


async def sign_in_needed(request: Request, exc: Exception) -> Response:
    response = see_other(f"{PREFIX}/sign-in")
    clear_cookie(response)
    return response
