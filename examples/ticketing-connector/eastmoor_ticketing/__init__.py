"""Eastmoor's ticketing API as a hub connector: each record becomes a ticket, posted as JSON with a
bearer token; the API answers `{"ticket": {"id": "TKT-..."}}` and takes an `Idempotency-Key`, so a
delivery sent twice makes one ticket.

Everything a connector needs comes from the hub: `ConnectorOptions` (unknown options refused),
`self.secrets.env(name)` (credentials by reference, blanked in logs), `connectors.http.client()`
(the hub's one HTTP client: only hosts the council allows, redirects never followed) and
`connectors.http.call()` (5xx, 408, 425, 429 and no answer are TransientError; other refusals
PermanentError).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field

from connectors import http
from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Secrets
from hub.errors import PermanentError


class TicketingOptions(ConnectorOptions):
    url: str = Field(pattern=r"^https?://")
    token_env: str
    queue: str = "customer-services"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class TicketingConnector(Connector):
    options_model = TicketingOptions
    options: TicketingOptions

    def __init__(self, name: str, options: TicketingOptions, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        # made while the hub builds the connector, so it calls only what the council allows
        self._client = http.client(options.timeout_seconds, min(5.0, options.timeout_seconds))

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        headers = {"Authorization": f"Bearer {self.secrets.env(self.options.token_env)}",
                   "Idempotency-Key": context.idempotency_key}
        ticket = {"queue": self.options.queue, "reference": context.reference, "record": dict(record)}
        response = http.call(self.name, self.options.timeout_seconds,
                             lambda: self._client.post(self.options.url, json=ticket, headers=headers),
                             lambda refused: f"{self.name} refused the ticket: HTTP {refused.status_code}")
        try:
            ticket_id = response.json()["ticket"]["id"]
        except (ValueError, KeyError, TypeError):
            raise PermanentError(f"{self.name} accepted the ticket but sent no ticket id") from None
        return Outcome(external_reference=str(ticket_id))

    def check(self) -> Health:
        try:
            response = self._client.get(self.options.url)
        except httpx.HTTPError as exc:
            return Health(False, f"cannot reach {self.options.url}: {type(exc).__name__}")
        return http.health(response.status_code)

    def describe(self) -> str:
        return f"{self.name}: tickets to {self.options.url} (queue {self.options.queue})"

    def close(self) -> None:
        self._client.close()
