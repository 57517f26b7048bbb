"""Residents' photos end to end on the real servers: `hub api` and `hub worker` processes on
PostgreSQL and RabbitMQ, a real clamd with a signature database this module writes, and the
attachment store on the filesystem or in an S3-compatible server (moto's), the same tests for both.
The street-cleansing Open311 back office is a simulator on loopback; it fetches the photo by the
`media_url` it was sent, as the council's system would.

One stack per store serves every test of the module (startup is most of the cost); each test
looks only at its own references in what the back office received.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image

from hub.api.server_thread import ServerThread
from hub.attachments.inspect import AttachmentRules, clean_image
from hub.attachments.links import LinkSigner
from hub.config.settings import Settings
from hub.delivery.attempt import idempotency_key
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from tests.support.clamd import ClamdServer
from tests.support.processes import HubProcesses, hub_processes
from tests.support.s3 import S3Server
from tests.support.servers import PostgresServer, RabbitMQServer, free_port
from tests.unit.test_attachments import jpeg_with_gps

pytestmark = pytest.mark.e2e

FORM = "report-fly-tipping"
SAMPLE = {k: v for k, v in json.loads((Settings().schemas_dir / FORM / "samples" / "coordinates-anonymous.json").read_text()).items()
          if k != "photos"}  # the front end's own photo links: here every photo is one uploaded to the hub
RESCAN_SECONDS = 0.5
LINK_SECONDS = 3600


def infected_png() -> bytes:
    """A photo standing in for malware; the hub keeps images only as saved again without their
    metadata, so the signature is of those bytes (what clamd is given)."""
    image = Image.new("RGB", (40, 30))
    image.putdata([((x * 7) % 256, (y * 11) % 256, 99) for y in range(30) for x in range(40)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


INFECTED = infected_png()
SIGNED = clean_image("tip.png", INFECTED, "image/png", AttachmentRules()).data


@dataclass
class Hub:
    stack: HubProcesses
    store: str
    street: Open311State
    link_key: str
    data_dir: Path
    s3: S3Server | None

    @property
    def url(self) -> str:
        return self.stack.api_urls[0]

    def upload(self, content: bytes, name: str) -> httpx.Response:
        with self.stack.client() as client:
            return client.post("/v1/attachments", content=content, headers={"X-Filename": name})

    def submit(self, payload: Any) -> httpx.Response:
        with self.stack.client() as client:
            return client.post(f"/v1/forms/{FORM}/submissions", json=payload)

    def status(self, reference: str) -> dict[str, Any]:
        with self.stack.client() as client:
            found: dict[str, Any] = client.get(f"/v1/submissions/{reference}").json()
            return found

    def received(self, reference: str) -> list[dict[str, Any]]:
        """What the street-cleansing back office holds for this submission."""
        key = idempotency_key(reference, "street-cleansing")
        return [r for r in self.street.requests() if r["attributes"].get("hub_reference") == [key]]

    def crm_cases(self, reference: str) -> list[dict[str, Any]]:
        return [c for c in self.stack.crm.cases() if c["client_unique_identifier"] == idempotency_key(reference, "crm")]

    def stored(self, sha256: str) -> bytes | None:
        """The blob as it lies in the store (sealed), or None when the store does not hold it."""
        if self.s3 is not None:
            if f"attachments/{sha256}" not in self.s3.keys("attachments/"):
                return None
            body: bytes = self.s3.client().get_object(Bucket=self.s3.bucket, Key=f"attachments/{sha256}")["Body"].read()
            return body
        path = self.data_dir / "attachments" / sha256[:2] / sha256
        return path.read_bytes() if path.exists() else None

    def local_blobs(self) -> list[Path]:
        root = self.data_dir / "attachments"
        return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []

    def deferrals(self, reference: str) -> int:
        """Times the worker looked at this submission's street-cleansing delivery and held it back
        for an unscanned file."""
        count = 0
        for line in self.stack.log("worker").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (entry.get("event") == "attachments_unscanned_deferred" and entry.get("reference") == reference
                    and entry.get("connector") == "street-cleansing"):
                count += 1
        return count


def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return found


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    server = ClamdServer(SIGNED, name="Hub.Test.Photo")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer,
        rabbitmq: RabbitMQServer, clamd: ClamdServer) -> Iterator[Hub]:
    store: str = request.param
    s3 = S3Server() if store == "s3" else None
    street = Open311State(api_key="street-key-" + secrets.token_hex(4))
    office = ServerThread(create_open311(street)).start()
    workdir = tmp_path_factory.mktemp(f"attachments-{store}")
    port, link_key = free_port(), "link-key-" + secrets.token_hex(16)
    env = {
        "HUB_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HUB_DATA_DIR": str(workdir / "data"),
        "HUB_CLAMD_SOCKET": clamd.socket,
        "HUB_CLAMD_TIMEOUT_SECONDS": "5",
        "HUB_ATTACHMENT_RESCAN_SECONDS": str(RESCAN_SECONDS),
        "HUB_ATTACHMENT_URL_KEY": link_key,
        "HUB_ATTACHMENT_URL_SECONDS": str(LINK_SECONDS),
        "STREET_CLEANSING_OPEN311_URL": office.url + PREFIX,
        "STREET_CLEANSING_OPEN311_API_KEY": street.api_key,
        **(s3.env() if s3 is not None else {}),
    }
    stack = hub_processes(workdir, postgres.create_database(f"hub_attachments_{store}_{secrets.token_hex(3)}"), rabbitmq.url,
                          env_changes=dict(env))
    try:
        stack.start_api(port=port)
        stack.start_worker()
        yield Hub(stack, store, street, link_key, workdir / "data", s3)
        logs = stack.all_logs()
        assert link_key not in logs and street.api_key not in logs
    finally:
        stack.close()
        office.stop()
        if s3 is not None:
            s3.close()


def settled_states(body: dict[str, Any]) -> dict[str, str]:
    return {d["connector"]: d["state"] for d in body["deliveries"]}


def test_a_photo_with_gps_reaches_street_cleansing_as_a_signed_link_without_its_metadata(hub: Hub) -> None:
    original = jpeg_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825), "the test photo must carry GPS to begin with"
    uploaded = hub.upload(original, "fly-tip-by-the-marina.jpg")
    assert uploaded.status_code == 201, uploaded.text
    photo = uploaded.json()
    assert (photo["scan"], photo["media_type"]) == ("clean", "image/jpeg")
    # kept sealed in the configured store, and only there
    sealed = hub.stored(photo["sha256"])
    assert sealed is not None and b"JFIF" not in sealed and b"PhoneMaker" not in sealed
    if hub.store == "s3":
        assert hub.local_blobs() == []

    answer = hub.submit({**SAMPLE, "photo_uploads": [photo["id"]]})
    assert answer.status_code == 202, answer.text
    reference = answer.json()["reference"]
    body = hub.stack.wait_settled([reference], timeout=60)[reference]
    assert settled_states(body) == {"crm": "delivered", "street-cleansing": "delivered"}
    [request] = hub.received(reference)
    assert request["received_count"] == 1
    assert next(d for d in body["deliveries"] if d["connector"] == "street-cleansing")["external_reference"] == request["service_request_id"]
    media_url = request["media_url"]
    assert media_url.startswith(f"{hub.url}/v1/attachments/{photo['id']}/content?")

    # the back office fetches the photo by its link alone (no API key)
    fetched = httpx.get(media_url, timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(fetched.content))
    image.load()
    assert image.format == "JPEG" and image.size == Image.open(io.BytesIO(original)).size == (64, 48)
    assert len(image.getexif()) == 0 and "exif" not in image.info
    assert b"Exif" not in fetched.content and b"PhoneMaker" not in fetched.content

    # a changed link is refused; so is one the hub signed that has expired
    query = {k: v[0] for k, v in parse_qs(urlsplit(media_url).query).items()}
    base = f"{hub.url}/v1/attachments/{photo['id']}/content"
    forged = {**query, "signature": ("0" if query["signature"][0] != "0" else "1") + query["signature"][1:]}
    later = {**query, "expires": str(int(query["expires"]) + LINK_SECONDS)}
    for tampered in (forged, later):
        refused = httpx.get(f"{base}?{urlencode(tampered)}", timeout=10)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json" and b"JFIF" not in refused.content
    signer = LinkSigner(hub.link_key.encode(), hub.url, LINK_SECONDS)
    expired = httpx.get(signer.url(photo["id"], now=time.time() - LINK_SECONDS - 60), timeout=10)
    assert expired.status_code == 410, expired.text
    assert "expired" in expired.json()["detail"] and b"JFIF" not in expired.content
    # the signature covers the id: another attachment's id with this link's signature is refused
    other = hub.upload(jpeg_with_gps(), "another.jpg").json()["id"]
    assert httpx.get(f"{hub.url}/v1/attachments/{other}/content?{urlencode(query)}", timeout=10).status_code == 403


def test_a_file_matching_the_signature_is_quarantined_and_a_report_carrying_it_is_refused(hub: Hub) -> None:
    posts, cases = hub.street.stats()["posts"], len(hub.stack.crm.cases())
    answer = hub.upload(INFECTED, "tip.png")
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert "tip.png" in problem["detail"] and "quarantined" in problem["detail"] and "Hub.Test.Photo" in problem["detail"]
    assert [e["pointer"] for e in problem["errors"]] == ["/files/tip.png"]
    assert "id" not in problem
    # the same file sent with the report in one request: refused naming it, no submission made
    inline = httpx.post(f"{hub.url}/v1/forms/{FORM}/submissions", headers={"Authorization": f"Bearer {hub.stack.key}"}, timeout=30,
                        files={"submission": (None, json.dumps(SAMPLE).encode(), "application/json"),
                               "photo_uploads": ("tip.png", INFECTED, "image/png")})
    assert inline.status_code == 422, inline.text
    assert "reference" not in inline.json() and "quarantined" in inline.json()["detail"]
    assert [e["pointer"] for e in inline.json()["errors"]] == ["/files/tip.png"]
    # nothing kept of it, nothing delivered
    assert hub.stored(hashlib.sha256(SIGNED).hexdigest()) is None
    assert hub.street.stats()["posts"] == posts and len(hub.stack.crm.cases()) == cases


def test_with_clamd_stopped_deliveries_wait_and_go_once_the_rescan_passes_the_photo(hub: Hub, clamd: ClamdServer) -> None:
    posts = hub.street.stats()["posts"]
    clamd.stop()
    try:
        photo = hub.upload(jpeg_with_gps(), "tip-in-the-lane.jpg")
        infected = hub.upload(INFECTED, "another-tip.png")
        assert photo.status_code == infected.status_code == 201, photo.text + infected.text
        assert photo.json()["scan"] == infected.json()["scan"] == "unscanned"
        clean_ref = hub.submit({**SAMPLE, "photo_uploads": [photo.json()["id"]]})
        infected_ref = hub.submit({**SAMPLE, "photo_uploads": [infected.json()["id"]]})
        assert clean_ref.status_code == infected_ref.status_code == 202, clean_ref.text + infected_ref.text
        references = [clean_ref.json()["reference"], infected_ref.json()["reference"]]
        # the worker looks again and again (each rescan interval) and never sends an unscanned file
        until(lambda: all(hub.deferrals(r) >= 3 for r in references), "three deferrals of each delivery")
        for reference in references:
            body = hub.status(reference)
            # waiting: still pending, not one attempt made, looked at again later
            assert {d["state"] for d in body["deliveries"]} == {"pending"}, body
            assert all(d["attempts"] == 0 and d["next_attempt_at"] is not None for d in body["deliveries"]), body
            assert hub.received(reference) == [] and hub.crm_cases(reference) == []
        assert hub.street.stats()["posts"] == posts
        # nor can a back office fetch it by a link meanwhile
        early = LinkSigner(hub.link_key.encode(), hub.url, LINK_SECONDS).url(photo.json()["id"])
        assert httpx.get(early, timeout=10).status_code == 404
    finally:
        clamd.start()

    # the rescan passes the photo: its report goes, once; it finds the other infected: parked, nothing sent
    settled = hub.stack.wait_settled(references, timeout=60)
    clean, dirty = settled[references[0]], settled[references[1]]
    assert settled_states(clean) == {"crm": "delivered", "street-cleansing": "delivered"}
    [request] = hub.received(references[0])
    assert request["received_count"] == 1 and len(hub.crm_cases(references[0])) == 1
    fetched = httpx.get(request["media_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"
    assert len(Image.open(io.BytesIO(fetched.content)).getexif()) == 0

    assert settled_states(dirty) == {"crm": "parked", "street-cleansing": "parked"}
    assert all("quarantined" in d["last_error"] and infected.json()["id"] in d["last_error"] for d in dirty["deliveries"])
    assert hub.received(references[1]) == [] and hub.crm_cases(references[1]) == []
    assert hub.street.stats()["posts"] == posts + 1
    assert hub.stored(infected.json()["sha256"]) is None
    with hub.stack.client() as client:
        shown = client.get(f"/v1/attachments/{infected.json()['id']}").json()
    assert shown["scan"] == "quarantined"
    # a new report naming the quarantined photo is refused naming the field
    again = hub.submit({**SAMPLE, "photo_uploads": [infected.json()["id"]]})
    assert again.status_code == 422, again.text
    assert [(e["pointer"], "quarantined" in e["detail"]) for e in again.json()["errors"]] == [("/photo_uploads/0", True)]
