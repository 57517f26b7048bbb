"""Staff sign-in through the council's OpenID Connect identity provider: discovery, the
authorization code flow with PKCE (authlib's RFC 6749 and 7636 parts), and the checks on the ID
token (joserfc).

The ID token must be signed by a key the provider publishes, issued by the configured issuer
for this hub's client id, unexpired, and carry the nonce this sign-in started with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from hub.auth.sessions import LoginState
from hub.config.settings import Settings
from hub.errors import ServiceUnavailable, Unauthorized
from hub.logs import get_logger

log = get_logger("hub.auth")
TIMEOUT_SECONDS = 10.0
# a provider's metadata and keys are read again after this long, or at once on an unknown key
METADATA_SECONDS = 3600.0
JWKS_REFRESH_SECONDS = 60.0
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


class OidcClient:
    """One hub process's view of its identity provider; metadata and keys are cached."""

    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise ServiceUnavailable("Sign-in is not configured: set HUB_OIDC_ISSUER and HUB_OIDC_CLIENT_ID.")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
        self.scopes = settings.oidc_scopes
        self._provider: tuple[float, Provider] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
                response = await http.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                found = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("oidc_provider_unreachable", url=url, error=type(exc).__name__)
            raise ServiceUnavailable("The identity provider cannot be reached just now; try again shortly.") from None
        if not isinstance(found, dict):
            raise ServiceUnavailable("The identity provider answered with something other than a JSON object.")
        return found

    async def provider(self) -> Provider:
        if self._provider is not None and time.monotonic() - self._provider[0] < METADATA_SECONDS:
            return self._provider[1]
        meta = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
        if str(meta.get("issuer", "")).rstrip("/") != self.issuer:
            # OpenID Connect Discovery 1.0 section 4.3: the document must name the issuer it came from
            raise ServiceUnavailable(f"The identity provider's metadata names issuer {meta.get('issuer')!r}, not {self.issuer!r}.")
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not isinstance(meta.get(k), str)]
        if missing:
            raise ServiceUnavailable(f"The identity provider's metadata lacks {', '.join(missing)}.")
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        # only public-key signatures: "none" is never accepted, HS* would sign with our own secret
        algorithms = tuple(a for a in offered if isinstance(a, str) and a[:2] in ("RS", "PS", "ES", "Ed"))
        provider = Provider(str(meta["issuer"]), meta["authorization_endpoint"], meta["token_endpoint"], meta["jwks_uri"], algorithms or ("RS256",))
        self._provider = (time.monotonic(), provider)
        return provider

    async def _keyset(self, refresh: bool = False) -> KeySet:
        fresh_enough = self._keys is not None and time.monotonic() - self._keys[0] < (JWKS_REFRESH_SECONDS if refresh else METADATA_SECONDS)
        if self._keys is not None and fresh_enough:
            return self._keys[1]
        provider = await self.provider()
        try:
            keys = KeySet.import_key_set(await self._get_json(provider.jwks_uri))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError):
            raise ServiceUnavailable("The identity provider's signing keys (JWKS) cannot be read.") from None
        self._keys = (time.monotonic(), keys)
        return keys

    async def authorization_url(self, redirect_uri: str, login: LoginState) -> str:
        provider = await self.provider()
        return str(
            prepare_grant_uri(
                provider.authorization_endpoint,
                client_id=self.client_id,
                response_type="code",
                redirect_uri=redirect_uri,
                scope=self.scopes,
                state=login.state,
                nonce=login.nonce,
                code_challenge=create_s256_code_challenge(login.code_verifier),
                code_challenge_method="S256",
            )
        )

    async def exchange(self, code: str, redirect_uri: str, login: LoginState) -> str:
        """Trades the authorization code (with the PKCE verifier) for tokens; returns the ID token."""
        provider = await self.provider()
        # a confidential client authenticates with HTTP Basic (client_secret_basic); a public one names itself
        extra = {} if self.client_secret else {"client_id": self.client_id}
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=login.code_verifier, **extra)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as http:
                if self.client_secret:
                    http.auth = httpx.BasicAuth(self.client_id, self.client_secret)
                response = await http.post(provider.token_endpoint, content=body, headers=headers)
            answer = response.json()
        except httpx.HTTPError as exc:
            log.warning("oidc_token_endpoint_unreachable", error=type(exc).__name__)
            raise ServiceUnavailable("The identity provider cannot be reached just now; try again shortly.") from None
        except ValueError:
            answer = {}
        if response.status_code != 200 or not isinstance(answer, dict):
            log.warning("oidc_code_refused", status=response.status_code, error=answer.get("error") if isinstance(answer, dict) else None)
            raise Unauthorized("The identity provider did not accept the sign-in code; start again at /v1/auth/login.")
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("The identity provider sent no ID token; is the 'openid' scope allowed for this hub?")
        return id_token

    async def identity(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once every check passes; raises Unauthorized naming the failure."""
        provider = await self.provider()
        try:
            decoded = jwt.decode(id_token, await self._keyset(), algorithms=list(provider.algorithms))
        except (JoseError, ValueError):
            # the provider may have rotated its keys since we read them: read them once more
            try:
                decoded = jwt.decode(id_token, await self._keyset(refresh=True), algorithms=list(provider.algorithms))
            except (JoseError, ValueError):
                raise Unauthorized("The ID token's signature does not verify with the identity provider's keys.") from None
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW_SECONDS,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": self.client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Unauthorized("The ID token has expired; sign in again.") from None
        except ClaimError as exc:
            raise Unauthorized(f"The ID token is not for this sign-in: claim {getattr(exc, 'claim', '?')!r} is not valid.") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            # OpenID Connect Core 3.1.3.7: with several audiences, this hub must be the authorized party
            raise Unauthorized("The ID token is not for this sign-in: claim 'azp' is not valid.")
        return claims
