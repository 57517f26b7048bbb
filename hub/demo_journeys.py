"""Two residents' journeys `hub demo` shows end to end, besides posting every sample: a fly-tipping
report with a photo uploaded first, and the paid garden waste subscriptions, held until paid.

The photo is made here with Pillow, with a GPS position in its EXIF, and written beside the demo's
log so the README's walk-through can upload the same file by hand.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

PHOTO_FORM = "report-fly-tipping"
PHOTO_SAMPLE = "coordinates-anonymous"
PHOTO_FILE = "fly-tipping-photo.jpg"
PHOTO_CONNECTOR = "street-cleansing"
PAID_FORM = "garden-waste-paid"
_GPS_IFD = 0x8825


def photo_with_gps() -> bytes:
    """A small JPEG as a phone takes one: its maker and the GPS position it was taken at in EXIF."""
    image = Image.new("RGB", (160, 120), (118, 124, 96))
    for x in range(40, 120):
        for y in range(50, 100):
            image.putpixel((x, y), (40, 40, 44))  # a dumped tyre, near enough
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(_GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (54.0, 39.0, 13.0), "W", (5.0, 40.0, 8.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=85)
    return out.getvalue()


def exif_of(content: bytes) -> dict[int, Any]:
    """The image's EXIF tags, with the GPS block's own tags under 0x8825 when it has one."""
    found = Image.open(io.BytesIO(content)).getexif()
    tags: dict[int, Any] = dict(found)
    gps = found.get_ifd(_GPS_IFD)
    if gps:
        tags[_GPS_IFD] = dict(gps)
    return tags


@dataclass
class PhotoReport:
    """What the demo sent: the photo's file, the upload's answer and the submission's reference."""

    path: Path
    size: int
    upload: dict[str, Any] = field(default_factory=dict)
    reference: str | None = None
    error: str | None = None


def post_photo_report(client: httpx.Client, schemas_dir: Path, folder: Path) -> PhotoReport | None:
    """Uploads the photo (`POST /v1/attachments`) and submits a fly-tipping report naming its id in
    `photo_uploads`. None when the form or its sample is not there (a council's own schemas)."""
    sample = schemas_dir / PHOTO_FORM / "samples" / f"{PHOTO_SAMPLE}.json"
    if not sample.is_file():
        return None
    photo = photo_with_gps()
    path = folder / PHOTO_FILE
    path.write_bytes(photo)
    report = PhotoReport(path, len(photo))
    uploaded = client.post("/v1/attachments", content=photo,
                           headers={"X-Filename": PHOTO_FILE, "Content-Type": "application/octet-stream"})
    if uploaded.status_code != 201:
        report.error = f"upload: HTTP {uploaded.status_code}: {uploaded.text[:200]}"
        return report
    report.upload = uploaded.json()
    payload = json.loads(sample.read_text(encoding="utf-8"))
    payload.pop("photos", None)  # the front end's own links: this report's photo is the uploaded one
    payload["photo_uploads"] = [report.upload["id"]]
    answer = client.post(f"/v1/forms/{PHOTO_FORM}/submissions", json=payload)
    if answer.status_code == 202:
        report.reference = answer.json()["reference"]
    else:
        report.error = f"submission: HTTP {answer.status_code}: {answer.text[:200]}"
    return report


def _went_to(deliveries: list[dict[str, Any]]) -> str:
    """Each delivery as the report shows it: connector, state and the back office's reference or error."""
    return ", ".join(f"{d['connector']} {d['state']} ({d['external_reference'] or d['last_error'] or '-'})" for d in deliveries)


def _delivery(status: dict[str, Any], connector: str) -> dict[str, Any] | None:
    return next((d for d in status.get("deliveries", []) if d["connector"] == connector), None)


def report_photo(report: PhotoReport, status: dict[str, Any] | None, open311_url: str | None) -> bool:
    """Prints what the street-cleansing back office received of the photo report and checks it:
    a `media_url` whose bytes are the photo without its EXIF. True only if all of that holds."""
    print(f"\nA photo report ({PHOTO_FORM} with a photo uploaded first):")
    sent = exif_of(report.path.read_bytes())
    print(f"  photo {report.path}: {report.size} bytes, {len(sent)} EXIF tag(s)" + (", a GPS position among them" if _GPS_IFD in sent else ""))
    if report.error is not None or report.reference is None:
        print(f"  NOT SENT: {report.error}")
        return False
    upload = report.upload
    print(f"  POST /v1/attachments: {upload['id']}, {upload['media_type']}, {upload['size']} bytes stored, scan {upload['scan']}"
          + (" (no virus scanner in the demo)" if upload["scan"] == "unscanned" else ""))
    delivered = _delivery(status or {}, PHOTO_CONNECTOR)
    print(f"  the resident's reference {report.reference}: {_went_to((status or {}).get('deliveries', []))}")
    if delivered is None or delivered["state"] != "delivered" or open311_url is None:
        print(f"  NOT DELIVERED to {PHOTO_CONNECTOR}")
        return False
    request_id = delivered["external_reference"]
    with httpx.Client(timeout=10) as back_office:
        [request] = back_office.get(f"{open311_url}/requests/{request_id}.json").json()
        media_url = request.get("media_url")
        print(f"  {PHOTO_CONNECTOR} (Open311) service request {request_id}: media_url {media_url}")
        if not media_url:
            print("  NO media_url: the back office did not get the photo")
            return False
        fetched = back_office.get(media_url)
    if fetched.status_code != 200:
        print(f"  fetching media_url: HTTP {fetched.status_code}")
        return False
    left = exif_of(fetched.content)
    print(f"  fetching media_url: {fetched.headers.get('content-type')}, {len(fetched.content)} bytes, "
          f"EXIF removed: {'yes' if not left else 'NO'}, GPS removed: {'yes' if _GPS_IFD not in left else 'NO'}")
    return not left


def _at(status: dict[str, Any], event: str, connector: str | None = None, state: str | None = None) -> datetime | None:
    for item in status.get("timeline", []):
        if item["event"] == event and (connector is None or item["connector"] == connector) and (state is None or item["status"] == state):
            return datetime.fromisoformat(item["at"])
    return None


def report_paid(posted: list[tuple[str, str]], statuses: dict[str, dict[str, Any]]) -> bool:
    """Prints each paid submission's payment and when its deliveries went: held until the payment
    succeeded, then delivered. True only if every one was paid and then delivered."""
    if not posted:
        return True
    print(f"\nPaid garden waste subscriptions ({PAID_FORM}, paid on the GOV.UK Pay simulator):")
    ok = True
    for sample, reference in posted:
        status = statuses.get(reference, {})
        payment = status.get("payment") or {}
        paid = _at(status, "status", "pay", "payment_success")
        deliveries = status.get("deliveries", [])
        held = paid is not None and bool(deliveries) and all(
            d["state"] == "delivered" and (went := _at(status, "delivered", d["connector"])) is not None and went >= paid
            for d in deliveries)
        ok = ok and status.get("status") == "paid" and held
        amount = f"£{payment.get('amount_pence', 0) / 100:.2f}"
        went_to = _went_to(deliveries)
        print(f"  {reference} {sample}: {amount}, payment {payment.get('state')}, submission {status.get('status')}; "
              + (f"held until paid, then {went_to}" if held else f"NOT held then delivered: {went_to or 'no delivery'}"))
    return ok
