"""`hub demo`'s identity provider (simulators/identity.py): the demo's startup points staff sign-in at
it, and the demo's member of staff signs in to the console, and to the admin API, with one click."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from hub.api.app import create_app
from hub.api.server_thread import ServerThread
from hub.config.settings import Settings
from hub.console.web import COOKIE
from hub.demo import console_sign_in
from hub.runtime import Runtime
from hub.store.migrate import upgrade
from simulators.identity import IdentityProvider
from tests.support.oidc import provider_form, sign_in


@pytest.fixture()
def demo(tmp_path: Path) -> Iterator[tuple[Runtime, ServerThread, IdentityProvider]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", broker_url="memory://", data_dir=tmp_path)
    env = {"HUB_DEMO_API_KEY": "em-" + secrets.token_hex(8), "WESTVALE_API_KEY": "wv-" + secrets.token_hex(8),
           "CRM_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t", "GARDEN_WASTE_URL": "http://127.0.0.1:9", "GARDEN_WASTE_API_TOKEN": "t"}
    runtime = Runtime.build(settings, env)
    upgrade(runtime.engine)
    api = ServerThread(create_app(runtime)).start()
    provider = console_sign_in(runtime, api.port)
    assert provider is not None
    try:
        yield runtime, api, provider
    finally:
        provider.stop()
        api.stop()
        runtime.close()


class Browser:
    """httpx keeps Secure cookies off plain http; a browser sends them to localhost, so this does."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=10, follow_redirects=False)
        self.jar: dict[str, str] = {}

    def get(self, url: str) -> httpx.Response:
        header = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        answer = self.http.get(url, headers={"Cookie": header} if header and url.startswith("http://localhost") else {})
        for line in answer.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(line).items():
                if morsel.value:
                    self.jar[name] = morsel.value
                else:
                    self.jar.pop(name, None)
        return answer


def test_the_demo_points_sign_in_at_its_identity_provider_and_the_demo_admin_signs_in_with_one_click(
    demo: tuple[Runtime, ServerThread, IdentityProvider],
) -> None:
    runtime, api, provider = demo
    hub_url = f"http://localhost:{api.port}"
    assert runtime.settings.oidc_issuer == provider.url and runtime.settings.staff_auth == "both"
    assert runtime.settings.public_url == hub_url and provider.subject == "wv-7d1c2a"
    browser = Browser()
    assert browser.get(f"{hub_url}/console").headers["location"] == "/console/sign-in"
    to_provider = browser.get(f"{hub_url}/console/sign-in")
    assert to_provider.status_code == 302 and to_provider.headers["location"].startswith(provider.url)
    page = browser.http.get(to_provider.headers["location"])
    # the one click: the demo person is a button on the provider's page
    assert re.search(r'<button[^>]*name="sub"[^>]*value="wv-7d1c2a"', page.text), page.text[:2000]
    form = provider_form(page)
    back = browser.http.post(str(page.url.join(form["action"])) if form["action"] else str(page.url), data={"sub": provider.subject})
    assert back.status_code == 302 and back.headers["location"].startswith(f"{hub_url}/console/callback?")
    signed = browser.get(back.headers["location"])
    assert signed.status_code == 303 and signed.headers["location"] == "/console" and COOKIE in browser.jar
    dashboard = browser.get(f"{hub_url}/console")
    assert dashboard.status_code == 200 and "<h1 class=\"govuk-heading-l\">Dashboard</h1>" in dashboard.text
    assert "Westvale digital services administrator (demo)" in dashboard.text


def test_the_demo_provider_signs_staff_in_to_the_admin_api_too(demo: tuple[Runtime, ServerThread, IdentityProvider]) -> None:
    _, api, provider = demo
    with httpx.Client(timeout=10, follow_redirects=False) as browser:
        answer = sign_in(browser, f"http://localhost:{api.port}", provider.subject)
    assert answer.status_code == 200, answer.text
    assert answer.json()["staff"] == {"id": "westvale-admin", "tenant": "westvale", "roles": ["admin"]}


def test_a_configured_identity_provider_is_left_alone(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", broker_url="memory://", staff_auth="oidc",
                        oidc_issuer="https://login.westvale.example")
    runtime = Runtime.build(settings, {"HUB_DEMO_API_KEY": "k", "WESTVALE_API_KEY": "w", "CRM_API_TOKEN": "t", "GARDEN_WASTE_API_TOKEN": "t"})
    try:
        assert console_sign_in(runtime, 8000) is None
        assert runtime.settings.oidc_issuer == "https://login.westvale.example"
    finally:
        runtime.close()
