"""The worker's rescan of files stored while clamd did not answer: each verdict is stored, an
infected file is quarantined (its blob deleted, the row kept so intake and delivery can say so).
Deliveries waiting for these files go on at their next look (hub.delivery.attempt `_scanned`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.attachments.scan import Clamd, Clean, Infected
from hub.logs import get_logger
from hub.runtime import Runtime
from hub.store import attachments as rows

log = get_logger("hub.attachments.rescan")


@dataclass(frozen=True)
class Rescanned:
    clean: int = 0
    quarantined: int = 0
    # still unscanned: clamd did not answer, the next run tries again
    waiting: int = 0


def rescan(runtime: Runtime, batch: int = 100) -> Rescanned:
    """One run: scans up to `batch` unscanned files; stops at the first that clamd does not answer."""
    socket_path = runtime.settings.clamd_socket
    if not socket_path:
        return Rescanned()
    scanner = Clamd(socket_path, runtime.settings.clamd_timeout_seconds)
    store = runtime.attachment_store
    with runtime.engine.connect() as conn:
        waiting = rows.unscanned(conn, batch)
    clean = quarantined = 0
    done: set[str] = set()
    for index, attachment in enumerate(waiting):
        if attachment.sha256 in done:
            continue
        verdict = scanner.scan(store.open(attachment.sha256)) if store.exists(attachment.sha256) else Infected("blob missing")
        if isinstance(verdict, Clean):
            with runtime.engine.begin() as conn:
                clean += rows.set_scan(conn, attachment.sha256, rows.CLEAN)
        elif isinstance(verdict, Infected):
            with runtime.engine.begin() as conn:
                count = rows.set_scan(conn, attachment.sha256, rows.QUARANTINED)
            store.delete(attachment.sha256)
            quarantined += count
            log.warning("attachment_quarantined", tenant=attachment.tenant, client=attachment.client_id,
                        sha256=attachment.sha256, signature=verdict.signature, found_by="rescan")
        else:
            log.info("attachment_rescan_waiting", reason=verdict.reason)
            return Rescanned(clean, quarantined, len(waiting) - index)
        done.add(attachment.sha256)
    if clean or quarantined:
        log.info("attachments_rescanned", clean=clean, quarantined=quarantined)
    return Rescanned(clean, quarantined, 0)
