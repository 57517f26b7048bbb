"""Files a mapping marks `attach: file`, sent by the connectors: as e-mail attachments through a
real SMTP server (the aiosmtpd sink) and as multipart/form-data parts to a real loopback HTTP
server; previews name the files without their bytes."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet

from connectors.base import DeliveryContext, Secrets
from connectors.email import EmailConnector
from connectors.registry import ConnectorRegistry
from connectors.rest import RestConnector
from hub.attachments.delivery import AttachedFile, resolve, scope
from hub.attachments.links import LinkSigner
from hub.attachments.storage import FileStore
from hub.config.files import ConnectorConfig
from hub.delivery.mapping import RecordMapping
from hub.privacy.sealing import Sealer, new_key
from hub.store.attachments import Attachment
from simulators.mail import MailSink

REGISTRY = ConnectorRegistry.from_entry_points()
CONTEXT = DeliveryContext("EDC-4M7QK2XW9A", "backoffice", 1, "EDC-4M7QK2XW9A/backoffice", 1, "eastmoor", "report-fly-tipping")


def attached(filename: str, media_type: str, content: bytes) -> AttachedFile:
    """A file whose bytes come in two chunks, as the store streams them."""
    half = len(content) // 2
    return AttachedFile(filename, media_type, len(content), f"att_{secrets.token_hex(4)}", lambda: iter([content[:half], content[half:]]))


def photo_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(3000)  # binary, every byte value likely, new each run


# -- e-mail -------------------------------------------------------------------------------------


@pytest.fixture()
def sink() -> Iterator[MailSink]:
    server = MailSink().start()
    yield server
    server.stop()


def mailer(port: int) -> EmailConnector:
    config = ConnectorConfig(name="backoffice", type="email", options={
        "host": "127.0.0.1", "port": port, "timeout_seconds": 5,
        "from_address": "forms-hub@eastmoor.example.org", "to": ["streetscene@eastmoor.example.org"],
        "subject": "Fly-tipping at {{ record.location }}", "body_template": "Location: {{ record.location }}\n"})
    built = REGISTRY.build(config, Secrets({}))
    assert isinstance(built, EmailConnector)
    return built


def test_the_team_receives_each_file_as_an_attachment_with_its_exact_bytes(sink: MailSink) -> None:
    first, second, plan = photo_bytes(), photo_bytes(), b"%PDF-1.7 site plan"
    record = {"location": "Mill Lane", "photos": [attached("photos-1.png", "image/png", first), attached("photos-2.png", "image/png", second)],
              "plan": attached("plan-1.pdf", "application/pdf", plan)}
    mailer(sink.port).send(record, CONTEXT)
    [received] = sink.state.messages()
    assert received.attachment("photos-1.png") == first and received.attachment("photos-2.png") == second
    assert received.attachment("plan-1.pdf") == plan
    types = {p.get_filename(): p.get_content_type() for p in received.message.iter_attachments()}
    assert types == {"record.json": "application/json", "record.csv": "text/csv", "photos-1.png": "image/png",
                     "photos-2.png": "image/png", "plan-1.pdf": "application/pdf"}
    # the body and the record's JSON and CSV are made from the rest of the record
    assert received.message.get_body(("plain",)).get_content().splitlines() == ["Location: Mill Lane"]
    assert json.loads(received.attachment("record.json")) == {"location": "Mill Lane"}
    assert received.attachment("record.csv").decode("utf-8-sig").splitlines() == ["location", "Mill Lane"]


def test_a_file_from_the_store_through_a_mapping_arrives_by_e_mail(sink: MailSink, tmp_path: Path) -> None:
    mapping_file = tmp_path / "report-fly-tipping.backoffice.yaml"
    mapping_file.write_text("form: report-fly-tipping\nconnector: backoffice\nrecord:\n"
                            "  location: {path: location}\n  photos: {path: attachments.photos, attach: file}\n")
    store = FileStore(tmp_path / "blobs", MultiFernet([Fernet(Fernet.generate_key())]))
    content = photo_bytes()
    blob = store.put(iter([content]), 10_000)
    row = Attachment("att_p", "eastmoor", "c", blob.sha256, "image/png", blob.size, "clean", datetime.now(UTC))
    files = scope([("photos", row)], LinkSigner(b"k" * 32, "https://hub.example", 60), Sealer.from_keys([new_key()]))
    record = resolve(RecordMapping.load(mapping_file).apply({"location": "Mill Lane"}, {}, files), store)
    mailer(sink.port).send(record, CONTEXT)
    [received] = sink.state.messages()
    assert received.attachment("photos-1.png") == content


def test_the_e_mail_preview_lists_the_files_by_name_type_and_size_without_their_bytes() -> None:
    content = b"PNG-PREVIEW-MARKER" * 10
    read: list[str] = []

    def chunks() -> Iterator[bytes]:
        read.append("read")
        yield content

    photo = AttachedFile("photos-1.png", "image/png", len(content), "att_x", chunks)
    preview = mailer(25).preview({"location": "Mill Lane", "photos": [photo]}, CONTEXT)
    assert f"photos-1.png  image/png  {len(content)} bytes" in preview.body
    assert "PNG-PREVIEW-MARKER" not in preview.body and read == []
    assert "Location: Mill Lane" in preview.body and "record.csv" in preview.body
    assert "photos-1.png" not in mailer(25).preview({"location": "Mill Lane"}, CONTEXT).body


# -- REST multipart -----------------------------------------------------------------------------


class _Capture(BaseHTTPRequestHandler):
    requests: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        reply = b'{"case": "CAS-000042"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    seen: list[tuple[dict[str, str], bytes]] = []
    handler = type("Capture", (_Capture,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def rest(url: str) -> RestConnector:
    config = ConnectorConfig(name="backoffice", type="rest", options={"url": f"{url}/cases", "reference_path": "case"})
    built = REGISTRY.build(config, Secrets({}))
    assert isinstance(built, RestConnector)
    return built


def parts(headers: dict[str, str], body: bytes) -> list[EmailMessage]:
    parsed = email.message_from_bytes(f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body, policy=email.policy.HTTP)
    assert isinstance(parsed, EmailMessage) and parsed.get_content_type() == "multipart/form-data"
    found = [p for p in parsed.iter_parts() if isinstance(p, EmailMessage)]
    return found


def test_a_record_with_files_is_posted_as_multipart_with_the_record_as_json_and_each_file_a_part(receiver: tuple[str, list[Any]]) -> None:
    url, seen = receiver
    first, second = photo_bytes(), photo_bytes()
    record = {"location": "Mill Lane", "photos": [attached("photos-1.png", "image/png", first), attached("photos-2.png", "image/png", second)]}
    outcome = rest(url).send(record, CONTEXT)
    assert outcome.external_reference == "CAS-000042"
    [(headers, body)] = seen
    assert headers["idempotency-key"] == "EDC-4M7QK2XW9A/backoffice"
    received = parts(headers, body)
    assert [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_content_type()) for p in received] == [
        ("record", None, "application/json"), ("photos", "photos-1.png", "image/png"), ("photos", "photos-2.png", "image/png")]
    assert json.loads(received[0].get_payload(decode=True)) == {"location": "Mill Lane"}
    assert received[1].get_payload(decode=True) == first and received[2].get_payload(decode=True) == second


def test_a_record_without_files_is_posted_as_plain_json_as_before(receiver: tuple[str, list[Any]]) -> None:
    url, seen = receiver
    rest(url).send({"location": "Mill Lane", "photos": []}, CONTEXT)
    [(headers, body)] = seen
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"location": "Mill Lane", "photos": []}


def test_the_rest_preview_lists_the_parts_without_the_files_bytes() -> None:
    content = b"PNG-PREVIEW-MARKER" * 10
    photo = AttachedFile("photos-1.png", "image/png", len(content), "att_x", lambda: iter([content]))
    preview = rest("http://127.0.0.1:9").preview({"location": "Mill Lane", "photos": [photo]}, CONTEXT)
    assert preview.content_type == "multipart/form-data"
    assert '{"location":"Mill Lane"}' in preview.body
    assert f"'photos-1.png' (image/png, {len(content)} bytes)" in preview.body and "PNG-PREVIEW-MARKER" not in preview.body
