"""The one small interface every connector implements: `send(record, context)` and `check()`,
and, for back offices that cannot push status updates, an optional `poll_status(references)`;
`preview(record, context)` shows what `send` would put on the wire, sending nothing.

A connector owns a pydantic model of its options and is built from it by the registry.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from hub.errors import ConfigError, PermanentError
from hub.logs import add_secrets
from hub.outbound.guard import AllowList, current_allow_list


@dataclass(frozen=True)
class DeliveryContext:
    """What a connector may know about the delivery it is sending."""

    reference: str
    connector: str
    delivery_id: int
    idempotency_key: str
    attempt: int
    tenant: str
    form_id: str


@dataclass(frozen=True)
class Outcome:
    """A record the back office accepted, with its own reference where it gave one."""

    external_reference: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """What a back office says now about a record it holds: its own short status code, any
    notes, and when the record last changed (None where the back office does not say)."""

    external_reference: str
    status: str
    message: str | None = None
    occurred_at: datetime | None = None


class PollingNotSupported(ConfigError):
    """The connector has no way to ask its back office for a record's status."""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


# what a preview shows instead of a credential
HIDDEN = "[secret]"


@dataclass(frozen=True)
class Preview:
    """What `send` would put on the wire for one record, nothing sent: how it goes (`REST POST
    https://...`), the headers with every credential replaced by HIDDEN, and the exact body."""

    protocol: str
    target: str
    headers: tuple[tuple[str, str], ...]
    content_type: str
    body: str
    # what may differ at the real send (a date, MIME boundaries), said beside the body
    note: str = ""


class Secrets:
    """Resolves credentials named by reference (an environment variable), never inline.

    Built once from the process environment at start-up and passed in, so no connector
    reads the environment on its own. Every value handed out is given to the log redactor,
    so it is blanked wherever it would appear in a log line.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)

    def env(self, name: str) -> str:
        try:
            value = self._environ[name]
        except KeyError:
            raise ConfigError(f"environment variable {name} is not set") from None
        add_secrets([value])
        return value

    def known(self, name: str) -> bool:
        return name in self._environ


class ConnectorOptions(BaseModel):
    """Base of every connector's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(ConnectorOptions):
    """HTTP Basic credentials: the user name, and the environment variable holding the password
    (read at each use, so a rotated password needs no restart)."""

    type: Literal["basic"]
    username: str
    password_env: str


class Connector(ABC):
    """A destination back office. Subclasses set `options_model` and implement `send` and `check`."""

    options_model: ClassVar[type[ConnectorOptions]]
    # whether `send` takes `attach: file` files (hub.attachments.delivery AttachedFile) in the record;
    # a connector that does not is never handed one (hub config check and the worker refuse it)
    sends_files: ClassVar[bool] = False

    def __init__(self, name: str, options: ConnectorOptions, secrets: Secrets) -> None:
        self.name = name
        self.options = options
        self.secrets = secrets
        # the hosts this connector may call: every tenant it serves must allow them (the registry sets it)
        self.outbound: AllowList = current_allow_list()

    @abstractmethod
    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        """Deliver one record; raise TransientError or PermanentError when it is not accepted."""

    @abstractmethod
    def check(self) -> Health:
        """Test settings, connectivity and credentials without sending a record."""

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        """The request `send` would make for this record, built by the same code, nothing sent
        and no credential shown. The default: the record as JSON, for connectors that say no more."""
        body = json.dumps(record, ensure_ascii=False, indent=2)
        return Preview(type(self).__name__, self.name, (), "application/json", body, "the record as the mapping made it")

    def poll_status(self, external_references: list[str]) -> list[StatusReport]:
        """The current status of these records (the references the back office gave on delivery,
        a bounded batch); a record the back office does not know is left out. Raise TransientError
        when it cannot be asked just now. The default: this back office cannot be polled."""
        raise PollingNotSupported(f"connector {self.name!r} ({type(self).__name__}) cannot be polled for status")

    def lookup(self, operation: str, arguments: dict[str, Any]) -> Any:
        """Reads from the back office (premises by UPRN, an account enquiry) for pre-filling a
        form: the reply as plain data. Raise TransientError when it cannot be asked just now.
        The default: this back office offers no lookups."""
        raise PermanentError(f"connector {self.name!r} ({type(self).__name__}) offers no lookups")

    @property
    def can_poll_status(self) -> bool:
        return type(self).poll_status is not Connector.poll_status

    def refuse_files(self, record: Mapping[str, Any]) -> None:
        """A PermanentError naming the record's `attach: file` keys, unless this connector sends files."""
        refuse_files(self, record)

    def validate_record(self, record: Mapping[str, Any]) -> list[str]:
        """Problems that would stop the back office accepting this record, found offline
        (`hub config check` runs it on every mapping case). The default finds none."""
        return []

    def describe(self) -> str:
        """What this connector sends where, for `hub connectors describe`."""
        return f"{self.name}: {type(self).__name__}"

    def close(self) -> None:  # noqa: B027 - a hook with a default, not an abstract method
        """Release connections; the default has nothing to release."""


def refuse_files(connector: object, record: Mapping[str, Any]) -> None:
    """A PermanentError naming the record's `attach: file` keys, unless `connector` sends files. A
    function, not only the method: the worker checks any plug-in, even one that does not subclass
    Connector (one without `sends_files` sends none)."""
    from hub.attachments.delivery import file_keys

    keys = [] if getattr(connector, "sends_files", False) else file_keys(record)
    if keys:
        raise PermanentError(files_refused(str(getattr(connector, "name", "?")), type(connector).__name__, keys))


def files_refused(name: str, kind: str, fields: Sequence[str]) -> str:
    """Why a connector that cannot send files will not take `attach: file` ones, and what to map instead."""
    return (f"connector {name!r} ({kind}) cannot send files, but the mapping gives it `attach: file` at "
            f"{', '.join(fields)}: map `attach: base64` (the file inside the record) or the signed link "
            "`attachments.<field>[n].url` instead; only e-mail and REST connectors send files")
