"""Staff sign-in with OpenID Connect: `/v1/auth/login` sends the browser to the council's identity
provider, `/v1/auth/callback` takes it back and answers with a hub session for the admin API.

Between the two, the state, nonce and PKCE verifier wait in a signed cookie that lives ten minutes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import RuntimeDep, get_session_secret
from hub.api.problems import problem_responses
from hub.auth import sessions
from hub.auth.oidc import OidcClient
from hub.config.files import Staff
from hub.errors import Forbidden, NotFound, SessionError, Unauthorized
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import audit

log = get_logger("hub.auth")
router = APIRouter(prefix="/v1/auth", tags=["staff sign-in"])
COOKIE = "hub_login"
_RESTART = "start again at /v1/auth/login"
Secret = Annotated[bytes, Depends(get_session_secret)]


def oidc_client(request: Request, runtime: Runtime) -> OidcClient:
    """The app's client of the council's identity provider (the admin API's and the console's)."""
    if runtime.settings.staff_auth == "local":
        raise NotFound("Staff sign-in with OpenID Connect is not enabled on this hub (HUB_STAFF_AUTH=local).")
    client: OidcClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        # an unconfigured or unreachable provider is a ServiceUnavailable, a refused sign-in Unauthorized
        client = request.app.state.oidc = OidcClient(runtime.settings)
    return client


def started_sign_in(cookie: str | None, secret: bytes) -> sessions.LoginState | None:
    """The state, nonce and PKCE verifier this browser's sign-in started with, or None (no cookie,
    a forged one, or older than ten minutes)."""
    try:
        return sessions.LoginState.open(cookie, secret) if cookie else None
    except SessionError:
        return None


def staff_signing_in(runtime: Runtime, client: OidcClient, claims: dict[str, Any], **where: str) -> Staff | None:
    """The staff entry the identity provider's claims name (a verified e-mail, or the subject), or
    None after logging the refusal."""
    verified = claims.get("email_verified") in (True, "true")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    staff = runtime.config.staff_for_identity(str(claims["sub"]), email, verified)
    if staff is None:
        log.warning("staff_sign_in_refused", reason="not on the staff list", issuer=client.issuer, **where)
    return staff


async def record_sign_in(runtime: Runtime, client: OidcClient, staff: Staff, **where: str) -> None:
    """Audits and logs a staff member's sign-in (`where`: e.g. via="console")."""
    detail: dict[str, Any] = {"method": "oidc", **where, "issuer": client.issuer, "matched_by": "subject" if staff.oidc_subject else "email"}
    tenant = None if staff.tenant == "*" else staff.tenant
    await run_in_threadpool(audit.record, runtime.engine, f"staff:{staff.id}", tenant, "staff.sign_in", f"staff:{staff.id}", detail)
    log.info("staff_signed_in", staff=staff.id, **where)


def _redirect_uri(runtime: Runtime) -> str:
    # registered with the identity provider exactly like this
    return f"{runtime.settings.public_url.rstrip('/')}/v1/auth/callback"


@router.get("/login", status_code=302, responses={302: {"description": "To the identity provider's sign-in page"}, **problem_responses(404, 503)})
async def login(request: Request, runtime: RuntimeDep, secret: Secret) -> RedirectResponse:
    """Starts a sign-in: redirects to the identity provider (authorization code flow with PKCE)."""
    client = oidc_client(request, runtime)
    state = sessions.LoginState.new()
    url = await client.authorization_url(_redirect_uri(runtime), state)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        COOKIE, state.seal(secret), max_age=sessions.LOGIN_SECONDS, path="/v1/auth",
        httponly=True, samesite="lax", secure=runtime.settings.public_url.startswith("https://"),
    )
    return response


@router.get("/callback", responses=problem_responses(401, 403, 404, 422, 503))
async def callback(
    request: Request,
    runtime: RuntimeDep,
    secret: Secret,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> JSONResponse:
    """Where the identity provider sends the browser back: checks the sign-in and answers with a
    hub session token for the admin API (`Authorization: Bearer <access_token>`)."""
    client = oidc_client(request, runtime)
    if error is not None:
        # nothing is granted on this path, so the provider's error needs no state to be shown;
        # only its code is repeated: the description is free text
        reason = error if re.fullmatch(r"[a-z_]{1,64}", error) else "an error"
        raise Unauthorized(f"The identity provider did not sign you in ({reason}); {_RESTART}.")
    started = started_sign_in(request.cookies.get(COOKIE), secret)
    if started is None:
        raise Unauthorized(f"This sign-in did not start here or took over ten minutes; {_RESTART}.")
    if state != started.state:
        raise Unauthorized(f"The sign-in's state does not match the one this browser started; {_RESTART}.")
    if not code:
        raise Unauthorized(f"The identity provider sent no sign-in code; {_RESTART}.")
    id_token = await client.exchange(code, _redirect_uri(runtime), started)
    claims = await client.identity(id_token, started.nonce)
    staff = staff_signing_in(runtime, client, claims)
    if staff is None:
        raise Forbidden("The identity provider knows you, but you are not on this hub's staff list; ask an administrator to add you.")
    session = sessions.issue(staff, secret, runtime.settings.session_seconds)
    await record_sign_in(runtime, client, staff)
    body = {
        "access_token": session.token,
        "token_type": "Bearer",
        "expires_in": session.expires_in,
        "staff": {"id": staff.id, "tenant": staff.tenant, "roles": list(staff.roles)},
    }
    response = JSONResponse(body, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, path="/v1/auth")
    return response
