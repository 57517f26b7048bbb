"""Staff sign in through a real OpenID Connect issuer on loopback, as a browser would, and use the
session with the admin API; forged, foreign and expired tokens and unknown people are refused."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.auth import sessions
from hub.auth.oidc import OidcClient
from hub.config.files import load_config
from hub.config.settings import Settings
from hub.errors import ConfigError, Unauthorized
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from tests.support.oidc import Issuer, oidc_issuer, provider_form, sign_in

LOCAL_TOKEN = "wv-admin-" + secrets.token_hex(8)


@dataclass
class SigningHub:
    url: str
    runtime: Runtime
    issuer: Issuer
    secret: bytes

    def admin(self, method: str, path: str, token: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.url}/v1/admin{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs)  # type: ignore[arg-type]


def start_hub(tmp_path: Path, issuer: Issuer, staff_auth: str = "both") -> tuple[ServerThread, SigningHub]:
    secret = secrets.token_hex(32)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}",
        staff_auth=staff_auth,  # type: ignore[arg-type]
        oidc_issuer=issuer.url,
        session_key=secret,  # type: ignore[arg-type]
    )
    runtime = Runtime.build(settings, {"WESTVALE_ADMIN_TOKEN": LOCAL_TOKEN})
    upgrade(runtime.engine)
    server = ServerThread(create_app(runtime))
    # the hub's redirect URI is only known once its port is: register it, then start serving
    client_id, client_secret = issuer.register_client(f"{server.url}/v1/auth/callback")
    runtime.settings = settings.model_copy(
        update={"public_url": server.url, "oidc_client_id": client_id, "oidc_client_secret": SecretStr(client_secret)}
    )
    server.start()
    return server, SigningHub(server.url, runtime, issuer, secret.encode())


@pytest.fixture()
def issuer() -> Iterator[Issuer]:
    with oidc_issuer() as running:
        yield running


@pytest.fixture()
def hub(tmp_path: Path, issuer: Issuer) -> Iterator[SigningHub]:
    server, hub = start_hub(tmp_path, issuer)
    try:
        yield hub
    finally:
        server.stop()
        hub.runtime.close()


@pytest.fixture()
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


def test_an_admin_signs_in_through_the_identity_provider_and_uses_the_session_with_the_admin_api(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("wv-7d1c2a", name="Wendy Vale", email="wendy@westvale.example", email_verified=True)
    answer = sign_in(browser, hub.url, "wv-7d1c2a")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == hub.runtime.settings.session_seconds
    assert body["staff"] == {"id": "westvale-admin", "tenant": "westvale", "roles": ["admin"]}
    assert answer.headers["cache-control"] == "no-store"
    clients = hub.admin("GET", "/clients", body["access_token"])
    assert clients.status_code == 200 and {c["tenant"] for c in clients.json()} == {"westvale"}
    [entry] = hub.admin("GET", "/audit", body["access_token"], params={"action": "staff.sign_in"}).json()
    assert entry["actor"] == "staff:westvale-admin" and entry["tenant"] == "westvale" and entry["target"] == "staff:westvale-admin"
    assert entry["detail"]["matched_by"] == "subject" and entry["at"]


def test_the_login_redirect_asks_for_a_code_with_state_nonce_and_a_pkce_challenge_kept_in_a_cookie(hub: SigningHub, browser: httpx.Client) -> None:
    start = browser.get(f"{hub.url}/v1/auth/login")
    assert start.status_code == 302
    location = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}" == hub.issuer.url
    assert query["response_type"] == "code" and query["client_id"] == hub.runtime.settings.oidc_client_id
    assert query["redirect_uri"] == f"{hub.url}/v1/auth/callback"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["state"] and query["nonce"] and "openid" in query["scope"].split()
    cookie = start.headers["set-cookie"].lower()
    assert cookie.startswith("hub_login=") and "httponly" in cookie and "samesite=lax" in cookie and "path=/v1/auth" in cookie


def test_a_person_with_a_verified_email_on_the_staff_list_is_signed_in_and_an_unverified_one_is_not(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("cw-1", email="Casework@Westvale.example", email_verified=True)
    answer = sign_in(browser, hub.url, "cw-1")
    assert answer.status_code == 200 and answer.json()["staff"]["id"] == "westvale-caseworker"
    hub.issuer.add_person("imposter", email="ict.ops@eastmoor.example", email_verified=False)
    refused = sign_in(browser, hub.url, "imposter")
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert "not on this hub's staff list" in refused.json()["detail"]


def test_a_person_the_identity_provider_knows_but_the_hub_does_not_is_refused_with_403(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("stranger-42", email="stranger@example.org", email_verified=True)
    refused = sign_in(browser, hub.url, "stranger-42")
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"] == "/problems/forbidden" and "ask an administrator" in problem["detail"]
    assert "access_token" not in problem


def test_a_sign_in_refused_at_the_identity_provider_or_not_started_here_gets_401(hub: SigningHub, browser: httpx.Client) -> None:
    denied = sign_in(browser, hub.url, "", deny=True)
    assert denied.status_code == 401 and "did not sign you in (access_denied)" in denied.json()["detail"]
    # a callback with no login cookie: someone else's link, or a sign-in over ten minutes old
    stray = httpx.get(f"{hub.url}/v1/auth/callback", params={"code": "abc", "state": "xyz"}, timeout=10)
    assert stray.status_code == 401 and "did not start here" in stray.json()["detail"]
    browser.get(f"{hub.url}/v1/auth/login")
    crossed = browser.get(f"{hub.url}/v1/auth/callback", params={"code": "abc", "state": "not-the-state"})
    assert crossed.status_code == 401 and "state does not match" in crossed.json()["detail"]


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _with_claims(token: str, **changes: object) -> str:
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps({**_claims(token), **changes}).encode()).rstrip(b"=").decode()
    return f"{header}.{payload}.{signature}"


def test_a_tampered_session_a_foreign_signature_and_the_login_cookie_are_not_sessions(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("cw-2", email="casework@westvale.example", email_verified=True)
    token = sign_in(browser, hub.url, "cw-2").json()["access_token"]
    assert hub.admin("GET", "/audit", token).status_code == 200
    caseworker = hub.runtime.config.staff["westvale-caseworker"]
    forged = [
        _with_claims(token, sub="westvale-admin"),  # someone else's id, the signature left as it was
        _with_claims(token, exp=int(datetime.now(UTC).timestamp()) + 10**6),
        sessions.issue(caseworker, b"not-the-hub's-key", 3600).token,
        # signed with the hub's key for the login cookie: the audience differs, so it is no session
        sessions.LoginState.new().seal(hub.secret),
    ]
    for bad in forged:
        answer = hub.admin("GET", "/audit", bad)
        assert answer.status_code == 401, bad
        assert answer.json()["detail"] == "This staff token is not known to the hub."
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_an_expired_session_is_refused_and_told_to_sign_in_again(hub: SigningHub) -> None:
    admin = hub.runtime.config.staff["westvale-admin"]
    old = sessions.issue(admin, hub.secret, 3600, now=datetime.now(UTC) - timedelta(hours=2))
    answer = hub.admin("GET", "/clients", old.token)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"] and "/v1/auth/login" in answer.json()["detail"]
    assert hub.admin("GET", "/clients", sessions.issue(admin, hub.secret, 3600).token).status_code == 200


def _id_token_for_another_client(issuer: Issuer, browser: httpx.Client, subject: str, nonce: str) -> str:
    """Signs in at the provider as another application would, and returns its ID token."""
    redirect = "http://127.0.0.1:9/elsewhere/callback"
    other_id, other_secret = issuer.register_client(redirect)
    params = {"response_type": "code", "client_id": other_id, "redirect_uri": redirect, "scope": "openid email", "state": "s", "nonce": nonce}
    page = browser.get(f"{issuer.url}/oauth2/authorize", params=params)
    provider_form(page)
    back = browser.post(str(page.url), data={"sub": subject})
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    token = browser.post(f"{issuer.url}/oauth2/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}, auth=(other_id, other_secret))
    return str(token.json()["id_token"])


def test_an_id_token_issued_to_another_application_is_refused_for_its_audience(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("wv-7d1c2a", email="wendy@westvale.example", email_verified=True)
    foreign = _id_token_for_another_client(hub.issuer, browser, "wv-7d1c2a", nonce="n-1")
    assert _claims(foreign)["aud"] != hub.runtime.settings.oidc_client_id
    checker = OidcClient(hub.runtime.settings)
    with pytest.raises(Unauthorized) as refused:
        asyncio.run(checker.identity(foreign, "n-1"))
    assert refused.value.status == 401 and "'aud'" in refused.value.detail
    # nor is the provider's token itself a hub session
    assert hub.admin("GET", "/audit", foreign).status_code == 401


def test_an_id_token_with_a_broken_signature_or_another_nonce_is_refused(hub: SigningHub, browser: httpx.Client) -> None:
    hub.issuer.add_person("wv-7d1c2a", email="wendy@westvale.example", email_verified=True)
    token = _id_token_for_another_client(hub.issuer, browser, "wv-7d1c2a", nonce="n-2")
    # checked as the application it was issued to, so only the signature or the nonce can fail
    checker = OidcClient(hub.runtime.settings.model_copy(update={"oidc_client_id": _claims(token)["aud"]}))
    assert asyncio.run(checker.identity(token, "n-2"))["sub"] == "wv-7d1c2a"
    with pytest.raises(Unauthorized) as replayed:
        asyncio.run(checker.identity(token, "another-nonce"))
    assert "'nonce'" in replayed.value.detail
    with pytest.raises(Unauthorized) as tampered:
        asyncio.run(checker.identity(_with_claims(token, sub="ict-operator"), "n-2"))
    assert "signature does not verify" in tampered.value.detail


def test_local_tokens_work_beside_sign_in_in_both_mode_and_not_in_oidc_mode(tmp_path: Path, hub: SigningHub, issuer: Issuer) -> None:
    assert hub.admin("GET", "/clients", LOCAL_TOKEN).status_code == 200
    server, strict = start_hub(tmp_path / "strict", issuer, staff_auth="oidc")
    try:
        assert strict.admin("GET", "/clients", LOCAL_TOKEN).status_code == 401
    finally:
        server.stop()
        strict.runtime.close()


def test_sign_in_is_not_offered_when_staff_use_local_tokens_only(tmp_path: Path, issuer: Issuer) -> None:
    server, local = start_hub(tmp_path, issuer, staff_auth="local")
    try:
        answer = httpx.get(f"{local.url}/v1/auth/login", timeout=10)
        assert answer.status_code == 404 and "HUB_STAFF_AUTH=local" in answer.json()["detail"]
        session = sessions.issue(local.runtime.config.staff["westvale-admin"], local.secret, 3600)
        assert local.admin("GET", "/clients", session.token).status_code == 401
        assert local.admin("GET", "/clients", LOCAL_TOKEN).status_code == 200
    finally:
        server.stop()
        local.runtime.close()


def test_two_staff_entries_cannot_claim_the_same_person_at_the_identity_provider(tmp_path: Path) -> None:
    shutil.copytree(Settings().config_dir, tmp_path / "config")
    staff = tmp_path / "config" / "clients.yaml"
    staff.write_text(staff.read_text() + "  - {id: second-admin, tenant: eastmoor, roles: [admin], oidc_subject: wv-7d1c2a, email: CASEWORK@westvale.example}\n")
    with pytest.raises(ConfigError) as problems:
        load_config(tmp_path / "config", {})
    assert "staff 'second-admin' has the same oidc_subject as 'westvale-admin'" in str(problems.value)
    assert "staff 'second-admin' has the same email as 'westvale-caseworker'" in str(problems.value)
