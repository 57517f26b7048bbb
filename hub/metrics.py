"""Prometheus metrics, served at `/metrics` by the API and optionally by each worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SUBMISSIONS = Counter("hub_submissions_total", "Submissions received, by form and outcome", ["form", "outcome"])
SHED = Counter("hub_intake_shed_total", "Submissions answered 503 because too many already waited to be stored")
PUBLISHED = Counter("hub_relay_published_total", "Outbox rows published to the broker", ["connector"])
RELAY_ERRORS = Counter("hub_relay_errors_total", "Relay passes that failed (broker or database down)")
OUTBOX_BACKLOG = Gauge("hub_outbox_backlog", "Outbox rows not yet published, as last seen by the relay")
DELIVERIES = Counter("hub_deliveries_total", "Delivery attempts, by connector and outcome", ["connector", "outcome"])
DELIVERY_SECONDS = Histogram(
    "hub_delivery_seconds",
    "Time to map and send one record",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CIRCUIT_STATE = Gauge("hub_circuit_state", "Each connector's circuit: 0 closed, 1 half-open, 2 open", ["connector"])
PARKED = Gauge("hub_deliveries_parked", "Deliveries parked now, by connector (as last counted)", ["connector"])
ALERTS = Counter("hub_alerts_total", "Alert e-mails to tenants' staff, by kind (parked, circuit) and outcome (sent, failed, dropped)", ["kind", "outcome"])
PROBLEMS = Counter("hub_http_problems_total", "Problem-detail answers the API gave (RFC 9457), by HTTP status", ["status"])
