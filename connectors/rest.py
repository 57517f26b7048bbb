"""REST/JSON connector over httpx: posts the mapped record and reads the back office's reference.

Credentials come from environment variables named in the options, never from the file itself.
A record holding files (a mapping's `attach: file`) goes as multipart/form-data instead: the rest
of the record as JSON in a part named `record`, then each file in a part named by its record key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import jmespath
import orjson
from pydantic import Field, field_validator

from connectors import http
from connectors.base import (
    HIDDEN,
    BasicAuth,
    Connector,
    ConnectorOptions,
    DeliveryContext,
    Health,
    Outcome,
    Preview,
    Secrets,
)
from hub.attachments.delivery import AttachedFile, files_in
from hub.errors import PermanentError
from hub.outbound.client import GuardedTransport, Reply


class BearerAuth(ConnectorOptions):
    type: Literal["bearer"]
    token_env: str


class RestOptions(ConnectorOptions):
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    # header name -> environment variable holding its value, for API keys sent as headers
    secret_headers: dict[str, str] = Field(default_factory=dict)
    auth: BearerAuth | BasicAuth | None = Field(default=None, discriminator="type")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # JMESPath into the JSON reply: the back office's own reference (e.g. a CRM case id)
    reference_path: str | None = None
    # JMESPath that must be truthy for a 2xx reply to count as accepted
    success_when: str | None = None
    idempotency_header: str | None = "Idempotency-Key"
    check_url: str | None = Field(default=None, pattern=r"^https?://")

    @field_validator("reference_path", "success_when")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            jmespath.compile(value)
        return value


class RestConnector(Connector):
    options_model = RestOptions
    sends_files = True
    options: RestOptions

    def __init__(self, name: str, options: RestOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._transport = GuardedTransport(self.outbound)
        self._client = http.client(options.timeout_seconds, options.connect_timeout_seconds, self.outbound, self._transport)
        self._reference = jmespath.compile(options.reference_path) if options.reference_path else None
        self._success = jmespath.compile(options.success_when) if options.success_when else None
        # what every send repeats, worked out once: sends go straight to the client's guarded transport
        self._url = httpx.URL(options.url)
        self._host = self._url.netloc.decode("ascii")
        self._fixed = {"Accept": "*/*", "Content-Type": "application/json"}
        self._timeouts = httpx.Timeout(options.timeout_seconds, connect=options.connect_timeout_seconds).as_dict()

    def _headers(self, context: DeliveryContext | None, hidden: bool = False) -> dict[str, str]:
        """The request's headers; `hidden` (a preview) puts HIDDEN where a credential goes, unread."""
        headers = {"User-Agent": "council-connector-hub", **self.options.headers}
        for header, env_name in self.options.secret_headers.items():
            headers[header] = HIDDEN if hidden else self.secrets.env(env_name)
        auth = self.options.auth
        if isinstance(auth, BearerAuth):
            headers["Authorization"] = f"Bearer {HIDDEN if hidden else self.secrets.env(auth.token_env)}"
        elif isinstance(auth, BasicAuth):
            # read on every call, so a rotated password is used without a restart
            if hidden:
                headers["Authorization"] = f"Basic {HIDDEN}"
            else:
                pair = f"{auth.username}:{self.secrets.env(auth.password_env)}".encode()
                headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        if context is not None and self.options.idempotency_header:
            headers[self.options.idempotency_header] = context.idempotency_key
        return headers

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        reply = http.reached(self.name, self.options.timeout_seconds, lambda: self._post(record, context))
        if not 200 <= reply.status < 300:
            http.accepted(self.name, reply.response(), lambda refused: f"{self.name} refused the record: HTTP {refused.status_code}: {_excerpt(refused)}")
        body = _json_or_none(reply.content)
        if self._success is not None and not self._success.search(body):
            raise PermanentError(f"{self.name} reported a failure: {_excerpt(reply.response())}")
        reference = self._reference.search(body) if self._reference is not None else None
        return Outcome(external_reference=str(reference) if reference is not None else None)

    def _post(self, record: Mapping[str, Any], context: DeliveryContext) -> Reply:
        """The record as JSON through the client's transport (the same gate, allow-list and checked
        addresses), building neither httpx model nor running what `httpx.Client.send` adds per call
        (auth flows, cookies, hooks, redirects: none used here); every reply is read whole."""
        rest, files = files_in(record)
        if files:
            content_type, body = _multipart(rest, files)
            fixed = {"Accept": "*/*", "Content-Type": content_type}
        else:
            body, fixed = _json_bytes(record), self._fixed
        headers = [("Host", self._host), ("Content-Length", str(len(body))), *fixed.items(), *self._headers(context).items()]
        return self._transport.exchange(self.options.method, self._url, headers, body, self._timeouts)

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        rest, files = files_in(record)
        target = f"{self.options.method} {self.options.url}"
        if files:  # the parts by name, type and size; the files' bytes are not read
            headers = (("Accept", "*/*"), ("Content-Type", "multipart/form-data; boundary=(made at each send)"),
                       *self._headers(context, hidden=True).items())
            lines = ['part "record" (application/json):', _json_bytes(rest).decode()]
            lines += [f'part "{key}" file {f.filename!r} ({f.media_type}, {f.size} bytes)' for key, f in files]
            return Preview("REST/JSON", target, headers, "multipart/form-data", "\n".join(lines),
                           "multipart/form-data: the record as JSON, then each file as its own part; the boundary is made afresh at each send")
        body = _json_bytes(record)  # the very bytes `_post` sends
        headers = (*self._fixed.items(), *self._headers(context, hidden=True).items())
        return Preview("REST/JSON", target, tuple(headers), "application/json", body.decode())

    def check(self) -> Health:
        url = self.options.check_url or self.options.url
        try:
            response = self._client.request("GET" if self.options.check_url else "OPTIONS", url, headers=self._headers(None))
        except httpx.HTTPError as exc:
            return Health(False, f"cannot reach {url}: {type(exc).__name__}")
        except Exception as exc:  # a missing credential is reported, not raised
            return Health(False, str(exc))
        return http.health(response.status_code)

    def describe(self) -> str:
        auth = self.options.auth.type if self.options.auth else "none"
        return f"{self.name}: REST/JSON {self.options.method} {self.options.url} (auth: {auth}, timeout {self.options.timeout_seconds:g} s)"

    def close(self) -> None:
        self._client.close()


def _json_bytes(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as httpx's `json=` writes it (orjson when it can, at a twentieth of the
    cost; the standard library for what orjson refuses, such as integers beyond 64 bits)."""
    try:
        return orjson.dumps(record)
    except TypeError:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _multipart(rest: Mapping[str, Any], files: list[tuple[str, AttachedFile]]) -> tuple[str, bytes]:
    """multipart/form-data, as httpx's `files=` writes it: the record as JSON in a part named
    `record`, each file in its own part named by its record key. Returns (Content-Type, body)."""
    parts: list[tuple[str, tuple[str | None, bytes, str]]] = [("record", (None, _json_bytes(rest), "application/json"))]
    parts += [(key, (f.filename, f.read(), f.media_type)) for key, f in files]
    request = httpx.Request("POST", "http://multipart.invalid/", files=parts)
    return request.headers["Content-Type"], request.read()


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except ValueError:
        return None


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")
