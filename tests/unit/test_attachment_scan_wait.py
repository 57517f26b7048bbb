"""A delivery held for the virus scan says why: with clamd configured but not answering, the
submission's status (`GET /v1/submissions/{reference}`) and the console's submission page give the
delivery `"waiting": "virus scan"` and a reason naming the file, and drop it once a rescan passes
the file; then the record goes."""

from __future__ import annotations

import json
import shutil
import socketserver
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.attachments.rescan import rescan
from hub.attachments.storage import FileStore
from hub.auth import sessions
from hub.auth.sessions import session_secret
from hub.config.settings import Settings
from hub.console import web as console_web
from tests.support.embedded import EmbeddedHub
from tests.unit.test_attachments import jpeg_with_gps
from tests.unit.test_attachments_api import upload

SAMPLE = json.loads((Settings().schemas_dir / "report-fly-tipping" / "samples" / "coordinates-anonymous.json").read_text())


class _CleanClamd(socketserver.StreamRequestHandler):
    """clamd's INSTREAM, answering every stream `OK` (and PING `PONG`)."""

    def handle(self) -> None:
        command = b""
        while not command.endswith(b"\0"):
            command += self.rfile.read(1)
        if command == b"zPING\0":
            self.wfile.write(b"PONG\0")
            return
        while size := struct.unpack("!L", self.rfile.read(4))[0]:
            self.rfile.read(size)
        self.wfile.write(b"stream: OK\0")


@pytest.fixture
def held(hub: EmbeddedHub, tmp_path: Path) -> Iterator[tuple[EmbeddedHub, str]]:
    """The embedded hub with clamd configured at a socket nothing answers on yet (the path)."""
    short = Path(tempfile.mkdtemp(prefix="clamd-"))  # a Unix socket's path is at most 107 bytes
    socket_path = str(short / "clamd.sock")
    blobs = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
    hub.app.state.attachment_store = blobs
    hub.runtime.use_attachment_store(blobs)
    hub.runtime.settings = hub.runtime.settings.model_copy(update={"clamd_socket": socket_path, "attachment_rescan_seconds": 0.2})
    try:
        yield hub, socket_path
    finally:
        shutil.rmtree(short, ignore_errors=True)


def until(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return found


def console_page(hub: EmbeddedHub, reference: str) -> str:
    secret, settings = session_secret(hub.runtime.settings), hub.runtime.settings
    session = sessions.issue_console("ict-operator", secret, settings.console_idle_minutes * 60, settings.console_absolute_hours * 3600)
    with httpx.Client(base_url=hub.url, timeout=10, headers={"Cookie": f"{console_web.COOKIE}={session.token}"}) as browser:
        page = browser.get(f"/console/submissions/{reference}")
    assert page.status_code == 200, page.text[:300]
    return unescape(page.text)


def test_a_delivery_held_for_the_virus_scan_says_so_until_a_rescan_passes_the_file(held: tuple[EmbeddedHub, str]) -> None:
    hub, socket_path = held
    photo = upload(hub, jpeg_with_gps(), **{"X-Filename": "tip.jpg"})
    assert photo.status_code == 201 and photo.json()["scan"] == "unscanned", photo.text
    photo_id = photo.json()["id"]
    sent = hub.post("report-fly-tipping", {**SAMPLE, "photo_uploads": [photo_id]})
    assert sent.status_code == 202, sent.text
    reference = sent.json()["reference"]

    # the worker has looked and held both back (next_attempt_at set, no attempt made): the CRM and
    # street cleansing (whose Open311 key this hub lacks: it parks once it may be sent)
    def both_held() -> dict[str, Any] | None:
        found: dict[str, Any] = hub.status(reference).json()
        return found if all(d["next_attempt_at"] for d in found["deliveries"]) else None

    body = until(both_held, "the deliveries held")
    assert sorted(d["connector"] for d in body["deliveries"]) == ["crm", "street-cleansing"]
    for delivery in body["deliveries"]:
        assert (delivery["state"], delivery["attempts"], delivery["waiting"]) == ("pending", 0, "virus scan")
        assert f"{photo_id} (photo_uploads)" in delivery["waiting_reason"] and "virus scanner" in delivery["waiting_reason"]
    page = console_page(hub, reference)
    assert f"Waiting for the virus scan: the virus scanner has not checked {photo_id} (photo_uploads) yet" in page
    assert hub.crm.cases() == []

    server = socketserver.ThreadingUnixStreamServer(socket_path, _CleanClamd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert rescan(hub.runtime).clean == 1
        # cleared as soon as the file is passed, before the delivery has gone
        assert [(d["waiting"], d["waiting_reason"]) for d in hub.status(reference).json()["deliveries"]] == [(None, None)] * 2
        settled = hub.wait_until_settled(reference)
    finally:
        server.shutdown()
        server.server_close()
    states = {d["connector"]: (d["state"], d["waiting"], d["waiting_reason"]) for d in settled["deliveries"]}
    assert states == {"crm": ("delivered", None, None), "street-cleansing": ("parked", None, None)}
    assert len(hub.crm.cases()) == 1
    assert "Waiting for the" not in console_page(hub, reference)


def test_without_a_scanner_configured_nothing_waits_for_a_scan(hub: EmbeddedHub, tmp_path: Path) -> None:
    blobs = FileStore(tmp_path / "attachments", hub.runtime.sealer.fernet)
    hub.app.state.attachment_store = blobs
    hub.runtime.use_attachment_store(blobs)
    photo = upload(hub, jpeg_with_gps(), **{"X-Filename": "tip.jpg"})
    assert photo.json()["scan"] == "unscanned"  # no HUB_CLAMD_SOCKET: the demo's files go unscanned
    sent = hub.post("report-fly-tipping", {**SAMPLE, "photo_uploads": [photo.json()["id"]]})
    reference = sent.json()["reference"]
    assert [d["waiting"] for d in hub.status(reference).json()["deliveries"]] == [None, None]
    settled = hub.wait_until_settled(reference)["deliveries"]
    assert {d["connector"]: d["state"] for d in settled} == {"crm": "delivered", "street-cleansing": "parked"}
