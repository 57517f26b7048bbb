"""A photo's GPS position kept as a field when the form asks (`keep_location`), on the embedded hub
with the street-cleansing Open311 simulator: the upload names its form field, the position is
sealed on the attachment row, the Open311 request gets it as lat/long when the resident gave no map
pin, the subject export shows it, and erasure, retention and key rotation deal with it."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from PIL import Image
from sqlalchemy import select

from hub.api.server_thread import ServerThread
from hub.attachments.inspect import AttachmentRules, clean_image
from hub.config.files import RetentionRule
from hub.intake.forms import FormRegistry
from hub.logs import captured
from hub.privacy.retention import scheduled
from hub.privacy.sealing import Sealer
from hub.store import personal_data
from hub.store.tables import attachments
from simulators.open311 import PREFIX, Open311State
from simulators.open311 import create_app as create_open311
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.privacy import add_staff, raw_database, sample, use_keys
from tests.unit.test_intake_api import assert_problem
from tests.unit.test_personal_data_keys import hub_command

KEY = Fernet.generate_key().decode()
# 53°47'12.345" N, 1°32'45.678" W (Leeds): seconds with decimals, so the rationals matter
LAT = 53 + 47 / 60 + 12.345 / 3600
LONG = -(1 + 32 / 60 + 45.678 / 3600)
FORM, FIELD = "report-fly-tipping", "photo_uploads"
EMAIL = "dafydd.llewelyn@example.org"  # the uprn-with-reporter sample's reporter


def jpeg_at(north: tuple[float, float, float] = (53.0, 47.0, 12.345), west: tuple[float, float, float] = (1.0, 32.0, 45.678)) -> bytes:
    image = Image.new("RGB", (64, 48), (40, 120, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", north, "W", west
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


@dataclass
class Office:
    hub: EmbeddedHub
    street: Open311State


@pytest.fixture()
def office(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Office]:
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))  # the attachment store, under the test's folder
    street = Open311State(api_key="street-key-" + Fernet.generate_key().decode()[:8])
    server = ServerThread(create_open311(street)).start()
    env = {"STREET_CLEANSING_OPEN311_URL": server.url + PREFIX, "STREET_CLEANSING_OPEN311_API_KEY": street.api_key}
    try:
        with embedded_hub(tmp_path, env=env) as hub:
            use_keys(hub, KEY)
            yield Office(hub, street)
    finally:
        server.stop()


def upload(hub: EmbeddedHub, content: bytes, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {hub.key}", "Content-Type": "application/octet-stream", "X-Filename": "tip.jpg"}
    return hub.client.post("/v1/attachments", content=content, headers=headers, params=params)


def report(office: Office, photo_id: str) -> dict[str, Any]:
    """A fly-tipping report found by UPRN (no map pin) naming the photo; the Open311 request it made."""
    hub = office.hub
    answer = hub.post(FORM, sample(FORM, "uprn-with-reporter", photo_uploads=[photo_id]))
    assert answer.status_code == 202, answer.text
    settled = hub.wait_until_settled(answer.json()["reference"])
    assert {d["connector"]: d["state"] for d in settled["deliveries"]} == {"crm": "delivered", "street-cleansing": "delivered"}, settled
    [request] = [r for r in office.street.requests() if r["attributes"]["hub_reference"] == [f"{settled['reference']}/street-cleansing"]]
    return request


def stored_location(hub: EmbeddedHub, attachment_id: str) -> str | None:
    with hub.runtime.engine.connect() as conn:
        found: str | None = conn.execute(select(attachments.c.location).where(attachments.c.id == attachment_id)).scalar_one()
        return found


def test_a_photo_for_a_field_that_keeps_location_gives_street_cleansing_its_position_sealed_at_rest(office: Office) -> None:
    hub = office.hub
    with captured() as logged:
        answer = upload(hub, jpeg_at(), form=FORM, field=FIELD)
        assert answer.status_code == 201, answer.text
        request = report(office, answer.json()["id"])
    assert "53.78" not in logged.getvalue() and "-1.54" not in logged.getvalue() and logged.getvalue()  # x-pii: never logged
    photo = answer.json()
    assert photo["location_kept"] is True
    shown = hub.client.get(f"/v1/attachments/{photo['id']}", headers={"Authorization": f"Bearer {hub.key}"}).json()
    assert shown == photo and "lat" not in str(shown)  # the answer says it was kept, never where
    # the stored file has no metadata left; the position is a sealed value on the row, not clear numbers
    stored = b"".join(hub.runtime.attachment_store.open(photo["sha256"]))
    assert len(Image.open(io.BytesIO(stored)).getexif()) == 0 and b"PhoneMaker" not in stored
    sealed = stored_location(hub, photo["id"])
    assert sealed is not None and "53.7" not in sealed and "lat" not in sealed
    assert b"53.78" not in raw_database(hub) and b"-1.54" not in raw_database(hub)
    assert Sealer.from_keys([KEY]).open(sealed) == pytest.approx({"lat": LAT, "long": LONG}, abs=1e-6)

    assert request["fields"]["lat"] and request["fields"]["long"]
    assert float(request["fields"]["lat"]) == pytest.approx(LAT, abs=1e-6)
    assert float(request["fields"]["long"]) == pytest.approx(LONG, abs=1e-6)
    assert request["fields"]["address_id"] == "100023336956"  # the resident's own UPRN goes too


def test_a_photo_sent_inline_with_its_report_keeps_its_position_by_its_fields_rules(office: Office) -> None:
    hub = office.hub
    answers = json.dumps(sample(FORM, "uprn-with-reporter")).encode()
    parts = [("submission", (None, answers, "application/json")), (FIELD, ("tip.jpg", jpeg_at(), "image/jpeg"))]
    answer = hub.client.post(f"/v1/forms/{FORM}/submissions", files=parts, headers={"Authorization": f"Bearer {hub.key}"})
    assert answer.status_code == 202, answer.text
    hub.wait_until_settled(answer.json()["reference"])
    [request] = office.street.requests()
    assert float(request["fields"]["lat"]) == pytest.approx(LAT, abs=1e-6)
    assert float(request["fields"]["long"]) == pytest.approx(LONG, abs=1e-6)


def test_a_map_pin_the_resident_gave_is_sent_rather_than_the_photos_position(office: Office) -> None:
    hub = office.hub
    photo = upload(hub, jpeg_at(), form=FORM, field=FIELD).json()
    answer = hub.post(FORM, sample(FORM, "coordinates-anonymous", photo_uploads=[photo["id"]]))
    assert answer.status_code == 202, answer.text
    hub.wait_until_settled(answer.json()["reference"])
    [request] = office.street.requests()
    assert (float(request["fields"]["lat"]), float(request["fields"]["long"])) == (54.6536, -5.6689)


def test_an_upload_naming_no_form_field_keeps_no_position(office: Office) -> None:
    hub = office.hub
    photo = upload(hub, jpeg_at()).json()
    assert photo["location_kept"] is False and stored_location(hub, photo["id"]) is None
    request = report(office, photo["id"])
    assert "lat" not in request["fields"] and "long" not in request["fields"]


def test_a_field_without_keep_location_keeps_no_position(office: Office) -> None:
    hub = office.hub
    form = hub.runtime.forms.get(FORM)
    assert form is not None
    [field] = form.attachment_fields
    plain = dataclasses.replace(form, attachment_fields=(dataclasses.replace(field, rules=dataclasses.replace(field.rules, keep_location=False)),))
    hub.runtime.forms = FormRegistry([plain if f is form else f for f in hub.runtime.forms])
    photo = upload(hub, jpeg_at(), form=FORM, field=FIELD).json()
    assert photo["location_kept"] is False and stored_location(hub, photo["id"]) is None
    request = report(office, photo["id"])
    assert "lat" not in request["fields"]


def test_a_photo_without_gps_keeps_no_position_even_where_the_field_would(office: Office) -> None:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, format="JPEG")
    photo = upload(office.hub, out.getvalue(), form=FORM, field=FIELD).json()
    assert photo["location_kept"] is False and stored_location(office.hub, photo["id"]) is None


def test_an_unknown_form_is_a_404_and_a_field_that_is_not_an_attachment_field_a_422_naming_field(office: Office) -> None:
    hub = office.hub
    problem = assert_problem(upload(hub, jpeg_at(), form="no-such-form", field=FIELD), 404, "not-found")
    assert "no-such-form" in problem["detail"]
    for field in ("reporter", "photo-uploads"):
        problem = assert_problem(upload(hub, jpeg_at(), form=FORM, field=field), 422, "validation-failed")
        assert [e["pointer"] for e in problem["errors"]] == ["/query/field"]
        assert "'field'" in problem["detail"] and field in problem["detail"] and FIELD in problem["errors"][0]["detail"]
    problem = assert_problem(upload(hub, jpeg_at(), form=FORM), 422, "validation-failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/query/field"]
    problem = assert_problem(upload(hub, jpeg_at(), field=FIELD), 422, "validation-failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/query/form"]
    # a bad name and a bad field are named together
    bad = hub.client.post("/v1/attachments", content=jpeg_at(), params={"form": FORM, "field": "reporter"},
                          headers={"Authorization": f"Bearer {hub.key}", "X-Filename": "../tip.jpg"})
    problem = assert_problem(bad, 422, "validation-failed")
    assert [e["pointer"] for e in problem["errors"]] == ["/headers/X-Filename", "/query/field"]
    # a form the client's council does not offer is not found either (Westvale has no planning)
    other = hub.client.post("/v1/attachments", content=jpeg_at(), params={"form": "planning-application", "field": FIELD},
                            headers={"Authorization": f"Bearer {hub.westvale_key}", "X-Filename": "tip.jpg"})
    assert_problem(other, 404, "not-found")
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(attachments.c.id).where(attachments.c.location.is_not(None))).all() == []


def test_the_field_rules_apply_to_the_upload(office: Office) -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    problem = assert_problem(upload(office.hub, out.getvalue(), form=FORM, field=FIELD), 422, "validation-failed")
    assert problem["errors"][0]["pointer"] == "/files/tip.jpg" and "image/gif" in problem["errors"][0]["detail"]


def test_the_export_shows_the_position_and_an_erasure_removes_it_with_the_row(office: Office) -> None:
    hub = office.hub
    photo = upload(hub, jpeg_at(), form=FORM, field=FIELD).json()
    report(office, photo["id"])
    exported = hub.admin("POST", "/subjects/export", token=add_staff(hub, "em-cw", "eastmoor", "caseworker"), json={"email": EMAIL})
    assert exported.status_code == 200, exported.text
    [submission] = exported.json()["submissions"]
    [attached] = submission["attachments"]
    assert attached["id"] == photo["id"] and attached["field"] == FIELD
    assert attached["location"] == pytest.approx({"lat": LAT, "long": LONG}, abs=1e-6)

    erased = hub.admin("POST", "/subjects/erase", token=add_staff(hub, "em-admin", "eastmoor", "admin"), json={"email": EMAIL})
    assert erased.status_code == 200, erased.text
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(attachments).where(attachments.c.id == photo["id"])).all() == []
    assert not hub.runtime.attachment_store.exists(photo["sha256"])


def test_retention_removes_the_position_with_the_row(office: Office) -> None:
    hub = office.hub
    photo = upload(hub, jpeg_at(), form=FORM, field=FIELD).json()
    report(office, photo["id"])
    hub.runtime.config = dataclasses.replace(hub.runtime.config, retention=(RetentionRule(days=0),))
    scheduled(hub.runtime)
    with hub.runtime.engine.connect() as conn:
        assert conn.execute(select(attachments).where(attachments.c.id == photo["id"])).all() == []


def test_hub_keys_rotate_reseals_the_position_with_the_newest_key(office: Office) -> None:
    hub = office.hub
    photo = upload(hub, jpeg_at(), form=FORM, field=FIELD).json()
    old = stored_location(hub, photo["id"])
    newest = Fernet.generate_key().decode()
    env = {"HUB_DATABASE_URL": str(hub.runtime.engine.url), "HUB_ENCRYPTION_KEYS": f"{newest},{KEY}"}
    rotated = hub_command("keys", "rotate", "--actor", "ict-keyholder", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "attachment-locations: 1 checked, 1 re-sealed, 0 already on the newest key" in rotated.stdout
    fresh = stored_location(hub, photo["id"])
    assert fresh is not None and fresh != old
    assert Sealer.from_keys([newest]).open(fresh) == pytest.approx({"lat": LAT, "long": LONG}, abs=1e-6)
    assert personal_data.reseal(hub.runtime.engine, Sealer.from_keys([newest, KEY]), "attachment-locations").current == 1


def test_a_malformed_or_impossible_gps_tag_keeps_no_position_and_is_no_error() -> None:
    rules = AttachmentRules(keep_location=True)
    assert clean_image("a.jpg", jpeg_at(north=(95.0, 0.0, 0.0)), "image/jpeg", rules).location is None
    kept = clean_image("b.jpg", jpeg_at(), "image/jpeg", rules).location
    assert kept == pytest.approx((LAT, LONG), abs=1e-6)
    assert clean_image("b.jpg", jpeg_at(), "image/jpeg", AttachmentRules()).location is None


def test_migration_0010_adds_an_empty_location_to_existing_uploads_and_downgrades_cleanly(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, inspect, text

    from hub.store.migrate import alembic_config

    engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    config = alembic_config(str(engine.url))

    def migrate(step: Any, revision: str) -> None:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)

    migrate(command.upgrade, "0009_attachment_links")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO attachments (id, tenant, client_id, sha256, media_type, size, scan, created_at) "
                          "VALUES ('att_old', 'eastmoor', 'demo-portal', :sha, 'image/jpeg', 10, 'clean', :now)"),
                     {"sha": "0" * 64, "now": datetime.now(UTC).isoformat()})
    migrate(command.upgrade, "0010_attachment_location")
    assert "location" in {c["name"] for c in inspect(engine).get_columns("attachments")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, location FROM attachments")).all() == [("att_old", None)]
    migrate(command.downgrade, "0009_attachment_links")
    assert "location" not in {c["name"] for c in inspect(engine).get_columns("attachments")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM attachments")).scalars().all() == ["att_old"]
    engine.dispose()
