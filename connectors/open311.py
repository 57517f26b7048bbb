"""Open311 GeoReport v2 connector: posts a service request, form-encoded, to a council's Open311 endpoint,
and polls `GET requests.json?service_request_id=a,b,...` for the status of the requests it made.

The mapped record names the GeoReport fields; attributes go as `attribute[code]=value` (lists repeat `[]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import Field

from connectors import http
from connectors.base import HIDDEN, Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Preview, Secrets, StatusReport
from hub.errors import PermanentError

# The GeoReport v2 POST fields a record may carry; `attributes` becomes attribute[code]=value.
FIELDS = (
    "service_code", "lat", "long", "address_string", "address_id", "email", "device_id", "account_id",
    "first_name", "last_name", "phone", "description", "media_url",
)
RECORD_KEYS = frozenset(FIELDS) | {"attributes"}
DESCRIPTION_LIMIT = 4000  # GeoReport v2: free text "limited to 4,000 characters"
# ids in one GET requests.json: the comma-separated list must stay well inside any server's URL limit
POLL_BATCH = 50
TOKEN_PREFIX = "token:"
Scalar = str | int | float | bool


class Open311Options(ConnectorOptions):
    endpoint: str = Field(pattern=r"^https?://", description="Base URL, e.g. https://council.example/open311/v2")
    api_key_env: str
    jurisdiction_id: str | None = None
    # used when the record names no service_code
    service_code: str | None = None
    # the attribute that carries the hub's idempotency key, so the server can spot a repeat
    idempotency_attribute: str | None = "hub_reference"
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)


class Open311Connector(Connector):
    options_model = Open311Options
    options: Open311Options

    def __init__(self, name: str, options: Open311Options, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        self._client = http.client(options.timeout_seconds, options.connect_timeout_seconds)
        self._base = options.endpoint.rstrip("/")

    def form_fields(self, record: Mapping[str, Any], idempotency_key: str | None = None) -> list[tuple[str, str]]:
        """The record as the ordered form fields of a GeoReport v2 POST (without the api_key)."""
        fields: list[tuple[str, str]] = []
        if self.options.jurisdiction_id:
            fields.append(("jurisdiction_id", self.options.jurisdiction_id))
        for name in FIELDS:
            value = record.get(name)
            if name == "service_code" and value is None:
                value = self.options.service_code
            if value is not None and value != "":
                fields.append((name, _text(value)))
        attributes = dict(record.get("attributes") or {})
        if idempotency_key is not None and self.options.idempotency_attribute:
            attributes[self.options.idempotency_attribute] = idempotency_key
        for code, value in attributes.items():
            if isinstance(value, list):  # a multivaluelist: attribute[code][]=a&attribute[code][]=b
                fields.extend((f"attribute[{code}][]", _text(item)) for item in value)
            elif value is not None:
                fields.append((f"attribute[{code}]", _text(value)))
        return fields

    def preview(self, record: Mapping[str, Any], context: DeliveryContext) -> Preview:
        problems = self.validate_record(record)
        if problems:
            raise PermanentError(f"record cannot be sent to {self.name}: {'; '.join(problems)}")
        body = urlencode([("api_key", HIDDEN), *self.form_fields(record, context.idempotency_key)])
        return Preview("Open311 (GeoReport v2)", f"POST {self._base}/requests.json", (),
                       "application/x-www-form-urlencoded; charset=utf-8", body)

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        self.refuse_files(record)  # files go by e-mail or REST only: never dropped silently
        problems = self.validate_record(record)
        if problems:
            raise PermanentError(f"record cannot be sent to {self.name}: {'; '.join(problems)}")
        body = urlencode([("api_key", self.secrets.env(self.options.api_key_env)), *self.form_fields(record, context.idempotency_key)])
        response = http.call(
            self.name,
            self.options.timeout_seconds,
            lambda: self._client.post(
                f"{self._base}/requests.json",
                content=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8", "User-Agent": "council-connector-hub"},
            ),
            lambda refused: f"{self.name} refused the service request: HTTP {refused.status_code}: {_open311_errors(refused)}",
        )
        return Outcome(external_reference=_request_id(response))

    def poll_status(self, external_references: list[str]) -> list[StatusReport]:
        """GeoReport v2 GET requests.json with comma-delimited service_request_ids ("this overrides all
        other arguments"); a `token:` reference is first turned into its service_request_id."""
        ids: dict[str, str] = {}  # service_request_id -> the reference the hub holds
        for reference in external_references:
            if reference.startswith(TOKEN_PREFIX):
                found = self._request_id_of_token(reference[len(TOKEN_PREFIX):])
                if found is not None:
                    ids[found] = reference
            else:
                ids[reference] = reference
        reports: list[StatusReport] = []
        wanted = list(ids)
        for start in range(0, len(wanted), POLL_BATCH):
            params = {"service_request_id": ",".join(wanted[start:start + POLL_BATCH])}
            if self.options.jurisdiction_id:
                params["jurisdiction_id"] = self.options.jurisdiction_id
            response = self._get("requests.json", params)
            body = _json_or_none(response)
            for item in body if isinstance(body, list) else []:
                if not isinstance(item, dict) or str(item.get("service_request_id")) not in ids:
                    continue
                status = item.get("status")
                if not isinstance(status, str) or not status.strip():
                    continue
                notes = item.get("status_notes")
                reports.append(StatusReport(
                    ids[str(item["service_request_id"])],
                    status.strip(),
                    notes if isinstance(notes, str) and notes.strip() else None,
                    _w3_time(item.get("updated_datetime")),
                ))
        return reports

    def _request_id_of_token(self, token: str) -> str | None:
        params = {"jurisdiction_id": self.options.jurisdiction_id} if self.options.jurisdiction_id else {}
        try:
            response = self._get(f"tokens/{token}.json", params)
        except PermanentError:  # not known (yet): the server has not made the request
            return None
        found = _request_id(response)
        return found if found is not None and not found.startswith(TOKEN_PREFIX) else None

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        return http.call(
            self.name,
            self.options.timeout_seconds,
            lambda: self._client.get(f"{self._base}/{path}", params=params, headers={"User-Agent": "council-connector-hub"}),
            lambda refused: f"{self.name} refused GET {path}: HTTP {refused.status_code}: {_open311_errors(refused)}",
        )

    def validate_record(self, record: Mapping[str, Any]) -> list[str]:
        problems = [f"unknown field {key!r} (GeoReport v2 fields: {', '.join(sorted(RECORD_KEYS))})" for key in record if key not in RECORD_KEYS]
        if not (record.get("service_code") or self.options.service_code):
            problems.append("no service_code in the record or the connector's options")
        has_point = record.get("lat") is not None and record.get("long") is not None
        if not (has_point or record.get("address_string") or record.get("address_id")):
            problems.append("no location: give lat and long, address_string or address_id")
        if (record.get("lat") is None) != (record.get("long") is None):
            problems.append("lat and long must be given together")
        for name in FIELDS:
            value = record.get(name)
            if value is not None and not isinstance(value, Scalar):
                problems.append(f"{name} must be a single value, not {type(value).__name__}")
        description = record.get("description")
        if isinstance(description, str) and len(description) > DESCRIPTION_LIMIT:
            problems.append(f"description is {len(description)} characters; Open311 allows {DESCRIPTION_LIMIT}")
        attributes = record.get("attributes")
        if attributes is not None and not isinstance(attributes, Mapping):
            problems.append("attributes must be an object of code: value")
        elif attributes:
            for code, value in attributes.items():
                items = value if isinstance(value, list) else [value]
                if not all(item is None or isinstance(item, Scalar) for item in items):
                    problems.append(f"attribute {code!r} must be a value or a list of values")
        return problems

    def check(self) -> Health:
        params = {"jurisdiction_id": self.options.jurisdiction_id} if self.options.jurisdiction_id else {}
        url = f"{self._base}/services.json"
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            return Health(False, f"cannot reach {url}: {type(exc).__name__}")
        if response.status_code != 200:
            return Health(False, f"service list answered HTTP {response.status_code}")
        services = _json_or_none(response)
        codes = {str(s.get("service_code")) for s in services if isinstance(s, dict)} if isinstance(services, list) else set()
        if self.options.service_code and self.options.service_code not in codes:
            return Health(False, f"service {self.options.service_code!r} is not offered (offered: {', '.join(sorted(codes)) or 'none'})")
        if not self.secrets.known(self.options.api_key_env):
            return Health(False, f"environment variable {self.options.api_key_env} is not set")
        return Health(True, f"reachable, {len(codes)} service(s) offered")

    def describe(self) -> str:
        code = f", service {self.options.service_code}" if self.options.service_code else ""
        return f"{self.name}: Open311 GeoReport v2 POST {self._base}/requests.json{code} (timeout {self.options.timeout_seconds:g} s)"

    def close(self) -> None:
        self._client.close()


def _text(value: Scalar) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _w3_time(value: Any) -> datetime | None:
    """A GeoReport w3 datetime (2010-01-01T00:00:00Z, or with an offset) as UTC; None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _open311_errors(response: httpx.Response, limit: int = 300) -> str:
    """The descriptions of a GeoReport error list `[{"code", "description"}]`, else the start of the body."""
    body = _json_or_none(response)
    if isinstance(body, dict):
        body = [body]
    if isinstance(body, list):
        descriptions = [str(e.get("description")) for e in body if isinstance(e, dict) and e.get("description")]
        if descriptions:
            return "; ".join(descriptions)[:limit]
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _request_id(response: httpx.Response) -> str | None:
    """The service_request_id, or `token:<token>` from a batch endpoint; None from a blackbox one.

    An accepted request whose reply cannot be read is still delivered: sending it again would
    make a second request where the server keeps no idempotency attribute.
    """
    body = _json_or_none(response)
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return None
    if first.get("service_request_id") not in (None, ""):
        return str(first["service_request_id"])
    if first.get("token") not in (None, ""):
        return f"token:{first['token']}"
    return None
