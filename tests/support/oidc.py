"""A real OpenID Connect issuer on loopback (oidc-provider-mock) and a browser's walk through a
sign-in: the hub's login redirect, the provider's sign-in form, the callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import httpx
from oidc_provider_mock import run_server_in_thread


@dataclass
class Issuer:
    url: str
    http: httpx.Client

    def register_client(self, redirect_uri: str) -> tuple[str, str]:
        """Registers a relying party (RFC 7591, as the mock offers it); returns its id and secret."""
        answer = self.http.post("/oauth2/clients", json={"redirect_uris": [redirect_uri]})
        answer.raise_for_status()
        return answer.json()["client_id"], answer.json()["client_secret"]

    def add_person(self, subject: str, **claims: Any) -> None:
        """A person the identity provider knows, with the claims its ID tokens carry."""
        self.http.put(f"/users/{subject}", json=claims).raise_for_status()


@contextmanager
def oidc_issuer() -> Iterator[Issuer]:
    # clients must register and authorization requests must carry a nonce, as a council's IdP would
    with run_server_in_thread(port=0, require_client_registration=True, require_nonce=True) as server:
        # the mock names itself after the host it is reached by: always use this name
        url = f"http://localhost:{server.server_port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            yield Issuer(url, http)


class _SignInForm(HTMLParser):
    """Finds the provider's sign-in form and the names of its fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (values.get("method") or "get").lower(), "action": values.get("action"), "fields": []})
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1]["fields"].append(values["name"])


def provider_form(page: httpx.Response) -> dict[str, Any]:
    parser = _SignInForm()
    parser.feed(page.text)
    form = next((f for f in parser.forms if "sub" in f["fields"] and f["method"] == "post"), None)
    assert form is not None, f"no sign-in form on the provider's page: {page.text[:500]}"
    return form


def sign_in(browser: httpx.Client, hub_url: str, subject: str, deny: bool = False) -> httpx.Response:
    """What a browser does: start at the hub, follow to the provider, submit its form as this
    person (or refuse), follow back to the hub's callback; returns the callback's answer."""
    start = browser.get(f"{hub_url}/v1/auth/login")
    assert start.status_code == 302, start.text
    page = browser.get(start.headers["location"])
    assert page.status_code == 200, page.text
    form = provider_form(page)
    target = str(page.url.join(form["action"])) if form["action"] else str(page.url)
    data = {"action": "deny"} if deny else {"sub": subject}
    back = browser.post(target, data=data)
    assert back.status_code == 302, back.text
    return browser.get(back.headers["location"])
