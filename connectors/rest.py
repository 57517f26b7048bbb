"""REST/JSON connector over httpx: posts the mapped record and reads the back office's reference.

Credentials come from environment variables named in the options, never from the file itself.
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
    Connector,
    ConnectorOptions,
    DeliveryContext,
    Health,
    Outcome,
    Secrets,
)
from connectors.http_wire import WireTransport
from hub.errors import PermanentError


class BearerAuth(ConnectorOptions):
    type: Literal["bearer"]
    token_env: str


class BasicAuth(ConnectorOptions):
    type: Literal["basic"]
    username: str
    password_env: str


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
    options: RestOptions

    def __init__(self, name: str, options: RestOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        # every reply is read (its reference, or the reason for a refusal): the lean transport fits
        self._client = http.client(options.timeout_seconds, options.connect_timeout_seconds, self.outbound, whole_replies=True)
        self._reference = jmespath.compile(options.reference_path) if options.reference_path else None
        self._success = jmespath.compile(options.success_when) if options.success_when else None
        # what every send repeats, worked out once: sends go straight to the lean transport
        url = httpx.URL(options.url)
        self._wire: WireTransport = self._client._transport  # type: ignore[assignment]
        self._origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        self._path = url.raw_path.decode("ascii")
        self._asked = httpx.Request(options.method, url)  # named in a refusal or a redirect's reason
        self._fixed = [(b"Host", url.netloc), (b"Accept", b"*/*"), (b"Connection", b"keep-alive"),
                       (b"Content-Type", b"application/json")]
        self._timeouts = {"connect": options.connect_timeout_seconds, "read": options.timeout_seconds,
                          "write": options.timeout_seconds}

    def _headers(self, context: DeliveryContext | None) -> dict[str, str]:
        headers = {"User-Agent": "council-connector-hub", **self.options.headers}
        for header, env_name in self.options.secret_headers.items():
            headers[header] = self.secrets.env(env_name)
        auth = self.options.auth
        if isinstance(auth, BearerAuth):
            headers["Authorization"] = f"Bearer {self.secrets.env(auth.token_env)}"
        elif isinstance(auth, BasicAuth):
            # read on every call, so a rotated password is used without a restart
            pair = f"{auth.username}:{self.secrets.env(auth.password_env)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        if context is not None and self.options.idempotency_header:
            headers[self.options.idempotency_header] = context.idempotency_key
        return headers

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        response = http.call(
            self.name,
            self.options.timeout_seconds,
            lambda: self._post(record, context),
            lambda refused: f"{self.name} refused the record: HTTP {refused.status_code}: {_excerpt(refused)}",
        )
        body = _json_or_none(response)
        if self._success is not None and not self._success.search(body):
            raise PermanentError(f"{self.name} reported a failure: {_excerpt(response)}")
        reference = self._reference.search(body) if self._reference is not None else None
        return Outcome(external_reference=str(reference) if reference is not None else None)

    def _post(self, record: Mapping[str, Any], context: DeliveryContext) -> httpx.Response:
        """The record as JSON through the lean transport (the same gate as the client's), with
        the headers httpx would send; about 100 µs less per delivery than `httpx.Client.request`."""
        body = _json_bytes(record)
        headers = [*self._fixed, (b"Content-Length", str(len(body)).encode())]
        headers.extend((name.encode("latin-1"), value.encode("latin-1")) for name, value in self._headers(context).items())
        response = self._wire.exchange(self._origin, self.options.method, self._path, headers, body, self._timeouts)
        response.request = self._asked
        return response

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


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except ValueError:
        return None


def _excerpt(response: httpx.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")
