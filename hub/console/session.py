"""Signing in to the console: the OpenID Connect code + PKCE flow of hub/auth/oidc.py, a cookie
session (`__Host-hub_console`) with idle and absolute timeouts, CSRF on every unsafe request,
and the role and tenant checks every page and action makes.

The session is re-signed on each request (a fresh idle timeout, never past the absolute one);
roles and tenant are read from today's configuration each time, as the admin API does.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.api.body import read_body
from hub.api.deps import get_runtime, get_session_secret
from hub.api.routes.admin import _scope
from hub.api.routes.staff_sign_in import oidc_client, record_sign_in, staff_signing_in, started_sign_in
from hub.auth import sessions
from hub.config.files import Role, Staff
from hub.console.web import COOKIE, LOGIN_COOKIE, PREFIX, ConsoleError, SignInNeeded, clear_cookie, page, see_other, set_cookie
from hub.errors import BadRequest, BodyTooLarge, RequestError, SessionError, SessionExpired
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import audit

log = get_logger("hub.console")
router = APIRouter(prefix=PREFIX, include_in_schema=False)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# a console form carries a token and a few fields; the largest, a correction of a delivery's answers
# (hub/console/deliveries.py), carries a submission's answers (HUB_MAX_BODY_BYTES, 1 MiB) in a form encoding
MAX_FORM_BYTES = 4 * 1024 * 1024
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
Secret = Annotated[bytes, Depends(get_session_secret)]


@dataclass(frozen=True)
class Signed:
    """The member of staff behind this request, their session as re-signed, and its CSRF token."""

    staff: Staff
    session: sessions.ConsoleSession
    csrf: str
    form: dict[str, str]

    @property
    def scope(self) -> str | None:
        """The one tenant this person sees; None for a platform admin (every tenant)."""
        return _scope(self.staff)

    def require(self, role: Role) -> None:
        if not self.staff.can(role):
            raise ConsoleError(403, "You cannot do this", f"This needs the {role} role; you have {', '.join(self.staff.roles)}.")

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        return page(request, template, status=status, cookie=self.session.token, signed=self, **context)

    def redirect(self, url: str) -> Response:
        response = see_other(url)
        set_cookie(response, self.session.token)
        return response


def _timeouts(runtime: Runtime) -> tuple[int, int]:
    return runtime.settings.console_idle_minutes * 60, runtime.settings.console_absolute_hours * 3600


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise ConsoleError(403, "This form cannot be accepted", "Send the console's own form again from its page.")
    try:
        body = await read_body(request, MAX_FORM_BYTES)  # refused before reading past the limit
    except BodyTooLarge:
        raise ConsoleError(400, "This form is too large", f"A console form is at most {MAX_FORM_BYTES} bytes.") from None
    except BadRequest as exc:
        raise ConsoleError(400, "This form cannot be read", str(exc)) from None
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True).items()}


async def signed_in(request: Request, runtime: RuntimeDep, secret: Secret) -> Signed:
    """The console session, renewed; an unsafe request must also carry the session's CSRF token."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded("no session")
    idle, absolute = _timeouts(runtime)
    try:
        opened = sessions.open_console(token, secret)
        staff = runtime.config.staff.get(opened.staff_id)
        if staff is None:
            # removed from the staff list since signing in: out at once
            raise SignInNeeded("not on the staff list")
        renewed = sessions.issue_console(staff.id, secret, idle, absolute, sid=opened.sid, started=opened.started)
    except SessionExpired:
        raise SignInNeeded("expired") from None
    except SessionError:
        raise SignInNeeded("not valid") from None
    form: dict[str, str] = {}
    csrf = sessions.console_csrf(secret, opened.sid)
    signed = Signed(staff, renewed, csrf, form)
    request.state.console = signed
    if request.method not in SAFE_METHODS:
        form.update(await _form(request))
        if not hmac.compare_digest(form.get("csrf_token", "").encode(), csrf.encode()):
            log.warning("console_csrf_refused", staff=staff.id, path=request.url.path)
            raise ConsoleError(403, "This form has expired", "The form's security token is missing or does not match your session: go back, reload the page and try again.")
    return signed


SignedDep = Annotated[Signed, Depends(signed_in)]


def _redirect_uri(runtime: Runtime) -> str:
    # registered with the identity provider exactly like this (docs/console.md)
    return f"{runtime.settings.public_url.rstrip('/')}{PREFIX}/callback"


@router.get("/sign-in")
async def sign_in(request: Request, runtime: RuntimeDep, secret: Secret) -> Response:
    """Starts a sign-in: to the identity provider (authorization code with PKCE)."""
    if runtime.settings.staff_auth == "local":
        raise ConsoleError(404, "Sign-in is not enabled", "The console needs OpenID Connect sign-in: set HUB_STAFF_AUTH=oidc (or both) and HUB_OIDC_ISSUER.")
    state = sessions.LoginState.new()
    try:
        url = await oidc_client(request, runtime).authorization_url(_redirect_uri(runtime), state)
    except RequestError as exc:
        raise ConsoleError(exc.status, "Sign-in is not available", exc.detail) from None
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(LOGIN_COOKIE, state.seal(secret), max_age=sessions.LOGIN_SECONDS, path="/", httponly=True, samesite="lax", secure=True)
    return response


@router.get("/callback")
async def callback(
    request: Request,
    runtime: RuntimeDep,
    secret: Secret,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """Back from the identity provider: checks the sign-in, starts the console session."""
    again = f"start again at {PREFIX}/sign-in."
    if runtime.settings.staff_auth == "local":
        raise ConsoleError(404, "Sign-in is not enabled", "The console needs OpenID Connect sign-in (HUB_STAFF_AUTH).")
    if error is not None:
        reason = error if re.fullmatch(r"[a-z_]{1,64}", error) else "an error"
        raise ConsoleError(401, "You are not signed in", f"The identity provider did not sign you in ({reason}); {again}")
    started = started_sign_in(request.cookies.get(LOGIN_COOKIE), secret)
    if started is None or state != started.state or not code:
        raise ConsoleError(401, "You are not signed in", f"This sign-in did not start in this browser, took over ten minutes, or came back without a code; {again}")
    client = oidc_client(request, runtime)
    try:
        claims = await client.identity(await client.exchange(code, _redirect_uri(runtime), started), started.nonce)
    except RequestError as exc:
        raise ConsoleError(exc.status, "You are not signed in", f"{exc.detail} ({again})") from None
    staff = staff_signing_in(runtime, client, claims, via="console")
    if staff is None:
        raise ConsoleError(403, "You cannot use the console", "The identity provider knows you, but you are not on this hub's staff list; ask an administrator to add you.")
    idle, absolute = _timeouts(runtime)
    session = sessions.issue_console(staff.id, secret, idle, absolute)
    await record_sign_in(runtime, client, staff, via="console")
    response = see_other(PREFIX)
    set_cookie(response, session.token)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, runtime: RuntimeDep, signed: SignedDep) -> Response:
    """Ends the console session (the CSRF token is checked first: no one signs you out from elsewhere)."""
    tenant = signed.scope
    await run_in_threadpool(audit.record, runtime.engine, f"staff:{signed.staff.id}", tenant, "staff.sign_out", f"staff:{signed.staff.id}", {"via": "console"})
    response = page(request, "signed_out.html", signed=None)
    clear_cookie(response)
    return response
