"""The peer's Celery app and its one task: POST the submission to the back office (the bench sink).

Configured as a careful team would: late acks, publish retry, publisher confirms, no results.
Settings come from PEER_* environment variables set by the harness.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

app = Celery("peer", broker=os.environ.get("PEER_BROKER_URL", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_publish_retry=True,
    broker_transport_options={"confirm_publish": True},
    task_ignore_result=True,
    task_default_queue=os.environ.get("PEER_QUEUE", "peer"),
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=int(os.environ.get("PEER_PREFETCH", "4")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

SINK_URL = os.environ.get("PEER_SINK_URL", "http://127.0.0.1:8199")
_client: httpx.Client | None = None


class BackOfficeUnavailable(Exception):
    """A 5xx or 429 from the back office: worth another try."""


def client() -> httpx.Client:
    # one keep-alive client per worker process, made after the fork
    global _client
    if _client is None:
        _client = httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
    return _client


@app.task(bind=True, acks_late=True, autoretry_for=(httpx.TransportError, BackOfficeUnavailable),
          retry_backoff=0.5, retry_backoff_max=5, retry_jitter=True, max_retries=10)
def deliver(self: Any, reference: str, payload: dict[str, Any]) -> None:
    key = f"{reference}/sink"
    record = {"idempotency_key": key, "reference": reference, "payload": payload}
    response = client().post(f"{SINK_URL}/records", json=record, headers={"Idempotency-Key": key})
    if response.status_code >= 500 or response.status_code == 429:
        raise BackOfficeUnavailable(f"HTTP {response.status_code}")
    response.raise_for_status()
