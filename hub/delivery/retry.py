"""When to try a failed delivery again: exponential backoff with full jitter, then park.

Full jitter (a random wait between 0 and the exponential ceiling) spreads retries of many
deliveries that failed together, so a recovering back office is not hit by a thundering herd.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hub.config.files import RetryPolicy
from hub.errors import DeliveryError, PermanentError, TransientError


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number `attempt` (1-based)."""
    ceiling = min(policy.cap_seconds, policy.base_seconds * (2 ** (attempt - 1)))
    return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class Decision:
    park: bool
    delay_seconds: float = 0.0


def decide(error: DeliveryError, policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> Decision:
    """Retry or park, by the error's class alone and the attempts made so far."""
    if isinstance(error, PermanentError) or not isinstance(error, TransientError):
        return Decision(park=True)
    if attempt >= policy.max_attempts:
        return Decision(park=True)
    return Decision(park=False, delay_seconds=backoff_seconds(policy, attempt, rng))
