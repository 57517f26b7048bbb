"""A connector that keeps every record it is sent in memory instead of delivering it: route a form
to `type: recording` in development to see exactly what a back office would get, without one.

    connectors:
      - name: new-form-preview
        type: recording
        options: {fail_first: 2, failure: transient}   # optional: watch retries and parking

`RecordingConnector.received("new-form-preview")` lists each accepted send (record, delivery
context, external reference). Production refuses the type (hub.config.production): whatever it
holds is gone when the process stops.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Secrets
from hub.errors import PermanentError, TransientError

TYPE = "recording"
REFERENCE_PREFIX = "REC-"


class RecordingOptions(ConnectorOptions):
    # each delivery (one idempotency key) is refused this many times before it is accepted
    fail_first: int = Field(default=0, ge=0, le=1000, strict=True)
    # how those refusals are raised: transient is retried with backoff, permanent parks the delivery
    failure: Literal["transient", "permanent"] | None = None

    @model_validator(mode="after")
    def _failure_needs_fail_first(self) -> Self:
        if self.failure is not None and self.fail_first == 0:
            raise ValueError(f"failure: {self.failure!r} has no effect without fail_first (how many sends to refuse)")
        return self


@dataclass(frozen=True)
class Received:
    """One send the recorder accepted: the record as it was sent, the delivery it belonged to,
    and the reference it answered with."""

    record: dict[str, Any]
    context: DeliveryContext
    external_reference: str


@dataclass
class _Recorder:
    """What one connector name has been sent; shared by every instance of that name, so a runtime
    rebuilt in the same process, or a test, reads the same list."""

    received: list[Received] = field(default_factory=list)
    # idempotency key -> the reference first given for it, and sends refused so far per key
    references: dict[str, str] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    counter: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RecordingConnector(Connector):
    """Records instead of delivering. A resend with the same idempotency key (the hub sends at
    least once) is recorded again, with its attempt, and answered with the reference the first
    send got, as a back office that honours idempotency keys would."""

    options_model = RecordingOptions
    sends_files = True
    options: RecordingOptions

    _recorders: ClassVar[dict[str, _Recorder]] = {}
    _recorders_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, options: RecordingOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._recorder = self._for(name)

    @classmethod
    def _for(cls, name: str) -> _Recorder:
        with cls._recorders_lock:
            return cls._recorders.setdefault(name, _Recorder())

    @classmethod
    def received(cls, name: str) -> list[Received]:
        """Every send the connector called `name` accepted, oldest first (a copy: safe to read
        while sending threads go on adding)."""
        recorder = cls._for(name)
        with recorder.lock:
            return list(recorder.received)

    @classmethod
    def clear(cls, name: str | None = None) -> None:
        """Forget what `name` (or every recording connector) received, its references and its
        refusals; references count from REC-000001 again."""
        with cls._recorders_lock:
            for key in [name] if name is not None else list(cls._recorders):
                cls._recorders.pop(key, None)

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        recorder = self._recorder
        key = context.idempotency_key
        with recorder.lock:
            refused = recorder.refused.get(key, 0)
            if refused < self.options.fail_first:
                recorder.refused[key] = refused + 1
                reason = (f"{self.name} (recording) refuses the first {self.options.fail_first} send(s) of each delivery, "
                          f"as configured: this was {refused + 1}")
                if self.options.failure == "permanent":
                    raise PermanentError(reason)
                raise TransientError(reason)
            reference = recorder.references.get(key)
            if reference is None:
                recorder.counter += 1
                reference = recorder.references[key] = f"{REFERENCE_PREFIX}{recorder.counter:06d}"
            # a copy, so what the hub builds next cannot change what was recorded
            recorder.received.append(Received(copy.deepcopy(dict(record)), context, reference))
        return Outcome(external_reference=reference)

    def check(self) -> Health:
        with self._recorder.lock:
            count = len(self._recorder.received)
        return Health(True, f"records in memory, delivers nothing ({count} received); production refuses it")

    def describe(self) -> str:
        failing = (f"; refuses the first {self.options.fail_first} send(s) of each delivery ({self.options.failure or 'transient'})"
                   if self.options.fail_first else "")
        return f"{self.name}: RecordingConnector, keeps every record in this process's memory (development only){failing}"
