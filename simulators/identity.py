"""The demo's identity provider: an OpenID Connect issuer on loopback (oidc-provider-mock, the one
the tests sign in through), with the console registered as a client and one demo member of staff.

It asks for no password: its sign-in page lists the demo person as a button, one click signs them
in. `hub demo` starts it and points HUB_OIDC_ISSUER at it; never use it outside a demo.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from oidc_provider_mock import User, run_server_in_thread

from hub.config.files import Staff

# the mock names itself after the host it is reached by, and browsers treat localhost as secure
HOST = "localhost"


@dataclass
class IdentityProvider:
    """A running issuer: its URL, the console's client credentials, and the person it knows."""

    url: str
    client_id: str
    client_secret: str
    subject: str
    name: str
    _stack: ExitStack = field(repr=False, default_factory=ExitStack)

    def summary(self) -> str:
        return f"identity provider {self.url}: sign in as {self.name} ({self.subject})"

    def stop(self) -> None:
        self._stack.close()


def demo_person(staff: dict[str, Staff]) -> Staff:
    """The member of staff the demo signs in: the first the staff list matches by OIDC subject."""
    for person in staff.values():
        if person.oidc_subject:
            return person
    raise LookupError("no member of staff in config/clients.yaml has an oidc_subject to sign in with")


def claims_of(person: Staff) -> dict[str, Any]:
    claims: dict[str, Any] = {"name": person.name or person.id}
    if person.email:
        claims.update(email=person.email, email_verified=True)
    return claims


def start(person: Staff, redirect_uris: list[str], port: int = 0) -> IdentityProvider:
    """Starts the issuer on `port` (0: a free one), registers the console's redirect URIs as one
    client (RFC 7591, as a council's provider would register the hub) and knows `person`."""
    assert person.oidc_subject, "the demo person must be matched by oidc_subject"
    stack = ExitStack()
    try:
        server = stack.enter_context(run_server_in_thread(
            port=port, require_client_registration=True, require_nonce=True,
            user_claims=[User(sub=person.oidc_subject, claims=claims_of(person))],
        ))
        url = f"http://{HOST}:{server.server_port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            answer = http.post("/oauth2/clients", json={"redirect_uris": redirect_uris})
            answer.raise_for_status()
            registered = answer.json()
        return IdentityProvider(url, registered["client_id"], registered["client_secret"], person.oidc_subject,
                                person.name or person.id, stack)
    except BaseException:
        stack.close()
        raise
