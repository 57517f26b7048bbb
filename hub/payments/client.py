"""A GOV.UK Pay client: create a payment, read its state, list its events (GOV.UK Pay's public
API, https://docs.payments.service.gov.uk/api_reference/). The API key is sent, never logged.

    PayError
     ├── PayUnavailable   connection errors, timeouts, 429 and 5xx: try again later
     └── PayRefused       any other answer: the request itself is wrong (the fee's configuration)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from hub.errors import HubError

FINISHED = ("success", "failed", "cancelled", "error")


class PayError(HubError):
    """GOV.UK Pay did not do what was asked."""


class PayUnavailable(PayError):
    """GOV.UK Pay could not be reached or failed on its side: the same request may work later."""


class PayRefused(PayError):
    """GOV.UK Pay refused the request (4xx other than 429)."""


@dataclass(frozen=True)
class PaymentState:
    payment_id: str
    status: str
    finished: bool
    next_url: str | None
    code: str | None = None
    message: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> PaymentState:
        state = body.get("state") or {}
        next_url = (body.get("_links") or {}).get("next_url") or {}
        return cls(
            payment_id=str(body["payment_id"]),
            status=str(state.get("status", "created")),
            finished=bool(state.get("finished", False)),
            next_url=next_url.get("href"),
            code=state.get("code"),
            message=state.get("message"),
        )

    @property
    def outcome(self) -> str:
        """What the hub makes of it: `success`, `failed`, `cancelled`, `expired` or `pending`.
        GOV.UK Pay reports an expired payment as `failed` with code P0020."""
        if not self.finished:
            return "pending"
        if (self.status == "failed" and self.code == "P0020") or self.status == "expired":
            return "expired"
        if self.status in ("success", "cancelled"):
            return self.status
        return "failed"


class PayClient:
    def __init__(self, base_url: str, api_key: str, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            # the exception's class only: its text may carry the request, and so the key's header
            raise PayUnavailable(f"GOV.UK Pay did not answer: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise PayUnavailable(f"GOV.UK Pay answered HTTP {response.status_code}")
        if response.status_code >= 400:
            detail = ""
            try:
                body = response.json()
                detail = f": {body.get('code', '')} {body.get('description', '')}".rstrip()
            except ValueError:
                pass
            raise PayRefused(f"GOV.UK Pay refused the request with HTTP {response.status_code}{detail}")
        try:
            found = response.json()
        except ValueError:
            raise PayUnavailable("GOV.UK Pay answered with something that is not JSON") from None
        if not isinstance(found, dict):
            raise PayUnavailable("GOV.UK Pay answered with something that is not a JSON object")
        return found

    def create(self, amount: int, description: str, reference: str, return_url: str, idempotency_key: str) -> PaymentState:
        body = {"amount": amount, "description": description, "reference": reference, "return_url": return_url, "language": "en"}
        key = "".join(c for c in idempotency_key if c.isalnum() or c == "-")
        return PaymentState.from_body(self._call("POST", "/v1/payments", json=body, headers={"Idempotency-Key": key}))

    def get(self, payment_id: str) -> PaymentState:
        return PaymentState.from_body(self._call("GET", f"/v1/payments/{payment_id}"))

    def events(self, payment_id: str) -> list[dict[str, Any]]:
        found = self._call("GET", f"/v1/payments/{payment_id}/events").get("events", [])
        return found if isinstance(found, list) else []
