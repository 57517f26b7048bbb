"""What one delivery attempt came to, as values: the steps of `hub.delivery.attempt` return one,
and `DeliveryHandler.settle` alone stores it, counts it and logs it.

    Delivered     the back office took the record (its reference, if it gave one)
    RetryAt       a transient failure with attempts left: send again at `at`
    DeferUntil    no attempt was made (early from a delay queue, circuit open, connector paused)
    Park          no more attempts: staff see `reason` and can replay it
    Skipped       nothing to do (an unknown delivery, or a finished one redelivered)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Delivered:
    started: datetime
    attempt: int
    external_reference: str | None


@dataclass(frozen=True)
class RetryAt:
    started: datetime
    attempt: int
    at: datetime
    reason: str


@dataclass(frozen=True)
class DeferUntil:
    until: datetime
    # note the new time in the database (not when the delivery was already due then)
    record: bool


@dataclass(frozen=True)
class Park:
    started: datetime
    reason: str
    # the last attempt's error: transient (attempts ran out) or permanent (sending again cannot help)
    kind: Literal["transient", "permanent"]
    attempt: int | None = None


@dataclass(frozen=True)
class Skipped:
    why: str


Outcome = Delivered | RetryAt | DeferUntil | Park | Skipped
