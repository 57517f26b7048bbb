"""The hub's one error tree; the worker decides retry or park by class alone.

    HubError
    ├── ConfigError            configuration files that cannot be used (file and line in the message)
    ├── SchemaError            a form schema that does not compile
    └── DeliveryError          a delivery attempt that did not succeed
        ├── TransientError     worth retrying: timeouts, connection errors, 5xx, 429, SOAP server faults
        └── PermanentError     park at once: 4xx, SOAP client faults, bad records
            └── MappingError   the mapping could not turn the payload into a record
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The configuration cannot be used; the message names the file and, where known, the line."""


class SchemaError(HubError):
    """A form's JSON Schema does not compile."""


class DeliveryError(HubError):
    """A delivery attempt failed; `reason` is safe to show staff and the front end (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    """The back office may accept the same record later: retry with backoff."""


class PermanentError(DeliveryError):
    """Sending the same record again cannot succeed: park with the reason."""


class MappingError(PermanentError):
    """The mapping could not produce a record from the payload."""


class OutboundRefused(PermanentError):
    """The hub will not call this address: not allow-listed, or link-local / metadata."""
