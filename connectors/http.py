"""One HTTP call to a back office, with its failures sorted the same way for every HTTP-based
connector: no answer, a 5xx, 408, 425 or 429 is worth retrying; any other refusal is not.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

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
