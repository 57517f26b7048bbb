"""One HTTP call to a back office, with its failures sorted the same way for every HTTP-based
connector: no answer, a 5xx, 408, 425 or 429 is worth retrying; any other refusal is not.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connectors.base import Health
from hub.errors import PermanentError, TransientError

TRANSIENT_STATUS = frozenset({408, 425, 429})


def call(name: str, timeout_seconds: float, send: Callable[[], httpx.Response], refusal: Callable[[httpx.Response], str]) -> httpx.Response:
    """Makes the call; returns a 2xx response, or raises TransientError / PermanentError whose
    reason is `refusal(response)` for a refused record."""
    try:
        response = send()
    except httpx.TimeoutException:
        raise TransientError(f"no reply from {name} within {timeout_seconds:g} s") from None
    except httpx.TransportError as exc:
        raise TransientError(f"could not reach {name}: {type(exc).__name__}") from None
    status = response.status_code
    if status >= 500 or status in TRANSIENT_STATUS:
        raise TransientError(f"{name} answered HTTP {status}")
    if status >= 300:
        raise PermanentError(refusal(response))
    return response


def client(timeout_seconds: float, connect_timeout_seconds: float) -> httpx.Client:
    """A connector's HTTP client: explicit timeouts, and redirects not followed (a back office
    that moves must be reconfigured, not chased)."""
    return httpx.Client(timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds), follow_redirects=False)


def health(status: int, unhealthy_from: int = 500, where: str = "") -> Health:
    """What a `check()` probe's HTTP status says about the back office."""
    if status in (401, 403):
        return Health(False, f"credentials rejected (HTTP {status})")
    if status >= unhealthy_from:
        return Health(False, f"back office unhealthy (HTTP {status}{where})")
    return Health(True, f"reachable (HTTP {status})")
