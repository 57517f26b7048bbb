"""The hub's own staff sessions after an OpenID Connect sign-in, and the short-lived login state
kept in the browser between the redirect to the identity provider and its callback.

Both are JWTs signed (HS256) with keys derived from HUB_SESSION_KEY, one key per purpose, so a
login-state cookie can never be used as a session. Unset, a development key is made in the data directory (never in production).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

from hub.config.files import Staff
from hub.config.settings import Settings
from hub.errors import SessionError, SessionExpired
from hub.privacy.sealing import dev_secret

ISSUER = "council-connector-hub"
SESSION_AUDIENCE = "council-connector-hub/admin"
LOGIN_AUDIENCE = "council-connector-hub/login"
LOGIN_SECONDS = 600
_ALGORITHMS = ["HS256"]


def session_secret(settings: Settings) -> bytes:
    if settings.session_key is not None:
        return settings.session_key.get_secret_value().encode()
    return dev_secret(settings, "session.key", lambda: secrets.token_hex(32)).encode()


def _key(secret: bytes, purpose: str) -> OctKey:
    return OctKey.import_key(hmac.new(secret, purpose.encode(), hashlib.sha256).digest())


def _now(now: datetime | None) -> int:
    return int((now or datetime.now(UTC)).timestamp())


def _sign(claims: dict[str, Any], secret: bytes, audience: str, seconds: int, now: datetime | None) -> str:
    issued = _now(now)
    body = {"iss": ISSUER, "aud": audience, "iat": issued, "exp": issued + seconds, "jti": secrets.token_urlsafe(12), **claims}
    return jwt.encode({"alg": "HS256"}, body, _key(secret, audience))


def _verify(token: str, secret: bytes, audience: str, now: datetime | None) -> dict[str, Any]:
    try:
        decoded = jwt.decode(token, _key(secret, audience), algorithms=_ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            now=_now(now),
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(decoded.claims)
    except ExpiredTokenError:
        raise SessionExpired("the token has expired") from None
    except (JoseError, ValueError) as exc:
        raise SessionError(f"the token is not valid ({type(exc).__name__})") from None
    return dict(decoded.claims)


@dataclass(frozen=True)
class Session:
    token: str
    expires_in: int


def issue(staff: Staff, secret: bytes, seconds: int, now: datetime | None = None) -> Session:
    """A session for this member of staff; the admin API accepts it as a bearer token. Roles and
    tenant are read again from the configuration on each request, so a change takes effect at once."""
    claims = {"sub": staff.id, "tenant": staff.tenant, "roles": list(staff.roles)}
    return Session(_sign(claims, secret, SESSION_AUDIENCE, seconds, now), seconds)


def verify(token: str, secret: bytes, now: datetime | None = None) -> str:
    """The staff id a session names; raises SessionExpired or SessionError."""
    return str(_verify(token, secret, SESSION_AUDIENCE, now)["sub"])


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


@dataclass(frozen=True)
class LoginState:
    """What the callback must find again: the state echoed by the identity provider, the nonce
    its ID token must carry, and the PKCE verifier that proves this browser started the sign-in."""

    state: str
    nonce: str
    code_verifier: str

    @classmethod
    def new(cls) -> LoginState:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))

    def seal(self, secret: bytes, now: datetime | None = None) -> str:
        claims = {"sub": "login", "state": self.state, "nonce": self.nonce, "cv": self.code_verifier}
        return _sign(claims, secret, LOGIN_AUDIENCE, LOGIN_SECONDS, now)

    @classmethod
    def open(cls, token: str, secret: bytes) -> LoginState:
        claims = _verify(token, secret, LOGIN_AUDIENCE, None)
        return cls(str(claims["state"]), str(claims["nonce"]), str(claims["cv"]))


# the staff console's cookie session: its own audience, so it is never an admin bearer token
CONSOLE_AUDIENCE = "council-connector-hub/console"


@dataclass(frozen=True)
class ConsoleSession:
    """A console session: who, its id (which CSRF tokens are bound to), and when it began (Unix
    seconds), for the absolute timeout; `token` is the cookie value, re-signed on every use."""

    staff_id: str
    sid: str
    started: int
    token: str


def issue_console(
    staff_id: str, secret: bytes, idle_seconds: int, absolute_seconds: int,
    now: datetime | None = None, sid: str | None = None, started: int | None = None,
) -> ConsoleSession:
    """A new console session, or (with `sid` and `started`) the same one seen again: it lasts
    `idle_seconds` from now, never past `absolute_seconds` after it began."""
    issued = _now(now)
    begun = issued if started is None else started
    seconds = min(idle_seconds, begun + absolute_seconds - issued)
    if seconds <= 0:
        raise SessionExpired("the console session reached its absolute timeout")
    session_id = sid or secrets.token_urlsafe(18)
    claims = {"sub": staff_id, "sid": session_id, "auth_time": begun}
    return ConsoleSession(staff_id, session_id, begun, _sign(claims, secret, CONSOLE_AUDIENCE, seconds, now))


def open_console(token: str, secret: bytes, now: datetime | None = None) -> ConsoleSession:
    """The console session a cookie holds; raises SessionExpired (idle or absolute) or SessionError."""
    claims = _verify(token, secret, CONSOLE_AUDIENCE, now)
    if not isinstance(claims.get("sid"), str) or not isinstance(claims.get("auth_time"), int):
        raise SessionError("the console session lacks its id or start")
    return ConsoleSession(str(claims["sub"]), claims["sid"], claims["auth_time"], token)


def console_csrf(secret: bytes, sid: str) -> str:
    """The CSRF token of every form in one console session: an HMAC of the session's id."""
    key = hmac.new(secret, b"council-connector-hub/console-csrf", hashlib.sha256).digest()
    return hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()
