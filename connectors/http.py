"""One HTTP call to a back office, with its failures sorted the same way for every HTTP-based
connector: no answer, a 5xx, 408, 425 or 429 is worth retrying; any other refusal is not.

Every connector's client is `client()`, the hub's one HTTP client (hub/outbound/client.py): a
request leaves only for a host its tenants allow, connects only to addresses checked at that
moment, and a redirect is never followed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx

from connectors.base import Health
from hub.errors import OutboundRefused, PermanentError, TransientError
from hub.outbound.client import client

__all__ = ["TRANSIENT_STATUS", "accepted", "call", "client", "health", "reached", "redirect_reason"]

TRANSIENT_STATUS = frozenset({408, 425, 429})
Answer = TypeVar("Answer")


def call(name: str, timeout_seconds: float, send: Callable[[], httpx.Response], refusal: Callable[[httpx.Response], str]) -> httpx.Response:
    """Makes the call; returns a 2xx response, or raises TransientError / PermanentError whose
    reason is `refusal(response)` for a refused record."""
    return accepted(name, reached(name, timeout_seconds, send), refusal)


def reached(name: str, timeout_seconds: float, send: Callable[[], Answer]) -> Answer:
    """Makes the call; an answer that never came is a TransientError, a refused address OutboundRefused."""
    try:
        return send()
    except OutboundRefused as exc:
        raise OutboundRefused(f"{name} was not called: {exc.reason}") from None
    except httpx.TimeoutException:
        raise TransientError(f"no reply from {name} within {timeout_seconds:g} s") from None
    except httpx.TransportError as exc:
        raise TransientError(f"could not reach {name}: {type(exc).__name__}") from None


def accepted(name: str, response: httpx.Response, refusal: Callable[[httpx.Response], str]) -> httpx.Response:
    """The response if the back office took the record; a 5xx, 408, 425 or 429 is a TransientError,
    a redirect or any other refusal a PermanentError."""
    status = response.status_code
    if status >= 500 or status in TRANSIENT_STATUS:
        raise TransientError(f"{name} answered HTTP {status}")
    if response.is_redirect:
        raise PermanentError(redirect_reason(response))
    if status >= 300:
        raise PermanentError(refusal(response))
    return response


def redirect_reason(response: httpx.Response) -> str:
    if response.next_request is not None:  # the httpx client worked out where it pointed
        target = response.next_request.url.host
    else:  # a reply straight from the transport (`RestConnector._post`), given the request it answered
        try:
            target = response.request.url.join(response.headers["location"]).host or "an unreadable location"
        except (KeyError, RuntimeError, httpx.InvalidURL):
            target = "an unreadable location"
    return f"the back office answered with a redirect to {target}, which the hub does not follow"


def health(status: int, unhealthy_from: int = 500, where: str = "") -> Health:
    """What a `check()` probe's HTTP status says about the back office."""
    if status in (401, 403):
        return Health(False, f"credentials rejected (HTTP {status})")
    if status >= unhealthy_from:
        return Health(False, f"back office unhealthy (HTTP {status}{where})")
    return Health(True, f"reachable (HTTP {status})")
