"""A submission's timeline for the front end that sent it: received, each delivery's outcome,
and every status its back offices reported (pushed or polled), in the order the hub learnt them.

The order is the hub's own clock (`at`: when the hub recorded each entry), never a back office's:
a back office with a wrong clock, or a status polled late, cannot make the timeline say a case was
answered before it was received. The back office's own time is shown beside its entry as
`occurred_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from hub.store.tables import status_events

# at the same instant, the hub's own steps come before what back offices said
_ORDER = {"received": 0, "delivered": 1, "parked": 1, "status": 2}


def _entry(at: datetime, event: str, **fields: Any) -> dict[str, Any]:
    occurred_at: datetime | None = fields.get("occurred_at")
    return {
        "at": at.isoformat(),
        "event": event,
        "connector": fields.get("connector"),
        "status": fields.get("status"),
        "message": fields.get("message"),
        "source": fields.get("source"),
        "external_reference": fields.get("external_reference"),
        "occurred_at": occurred_at.isoformat() if occurred_at is not None else None,
        "_sort": (at, _ORDER[event]),
    }


def timeline(conn: Connection, submission_id: int, received_at: datetime, delivery_rows: Sequence[Any]) -> list[dict[str, Any]]:
    """`delivery_rows` are the submission's deliveries rows, already read for its status."""
    entries = [_entry(received_at, "received", source="hub")]
    for delivery in delivery_rows:
        if delivery.state in ("delivered", "parked"):
            entries.append(_entry(
                delivery.updated_at,
                delivery.state,
                connector=delivery.connector,
                source="hub",
                external_reference=delivery.external_reference,
            ))
    events = conn.execute(
        select(status_events).where(status_events.c.submission_id == submission_id).order_by(status_events.c.id)
    ).all()
    external = {d.id: d.external_reference for d in delivery_rows}
    for event in events:
        entries.append(_entry(
            # entries sort by when the hub recorded them, never by the back office's clock, and a
            # status is recorded after the submission it is about, so it never sorts before "received"
            max(event.recorded_at, received_at),
            "status",
            connector=event.connector,
            status=event.status,
            message=event.message,
            source=event.source,
            external_reference=external.get(event.delivery_id),
            occurred_at=event.occurred_at,
        ))
    # a stable sort keeps the order of events recorded for the same instant
    entries.sort(key=lambda entry: entry["_sort"])
    for entry in entries:
        del entry["_sort"]
    return entries
