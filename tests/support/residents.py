"""A signed-in resident with accounts in two back offices: a garden waste subscription taken by the
waste (Bartec-like SOAP) simulator, then a missed-bin report taken by the CRM simulator, both sent
with the portal's Resident-Subject header. Shared by the unit (SQLite) and PostgreSQL tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from hub.api.server_thread import ServerThread
from simulators import waste
from tests.support.embedded import EmbeddedHub, embedded_hub
from tests.support.privacy import sample

WASTE_PASSWORD = "bartec-" + secrets.token_hex(4)
# in the waste simulator's gazetteer: 14 ORCHARD WAY, EASTMOOR, EM1 4QT; 3 KILN LANE, EM2 7HD
ORCHARD_WAY, KILN_LANE = "100090215423", "100090215487"


@dataclass
class Portal:
    hub: EmbeddedHub
    bartec: waste.WasteState
    waste_url: str
    subject: str
    garden: str
    missed_bin: str

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return self.hub.client.get(path, params=params, headers={"Authorization": f"Bearer {key or self.hub.key}"})

    def prefill(self, form: str, subject: str | None = None, key: str | None = None) -> httpx.Response:
        return self.get(f"/v1/residents/{subject or self.subject}/prefill", key, form=form)

    def requests(self, subject: str | None = None, key: str | None = None, **params: Any) -> httpx.Response:
        return self.get(f"/v1/residents/{subject or self.subject}/submissions", key, **params)


def garden_waste(uprn: str) -> dict[str, Any]:
    start = (date.today() + timedelta(days=30)).isoformat()
    return sample("garden-waste-subscription", "new-two-bins", uprn=uprn, start_date=start)


def missed_bin(uprn: str) -> dict[str, Any]:
    return sample("missed-bin-collection", "general-uprn", address={"uprn": uprn},
                  collection_date=(date.today() - timedelta(days=1)).isoformat())


@contextmanager
def signed_in_resident(tmp_path: Path, database_url: str | None = None) -> Iterator[Portal]:
    bartec = waste.WasteState("hub", WASTE_PASSWORD)
    server = ServerThread(waste.create_app(bartec)).start()
    env = {"WASTE_URL": server.url, "WASTE_PASSWORD": WASTE_PASSWORD}
    subject = "auth0|" + secrets.token_hex(6)
    try:
        with embedded_hub(tmp_path, env=env, database_url=database_url) as hub:
            resident = {"Resident-Subject": subject}
            garden = hub.post("garden-waste-subscription", garden_waste(KILN_LANE), headers=resident)
            assert garden.status_code == 202, garden.text
            assert hub.wait_until_settled(garden.json()["reference"])["deliveries"][0]["state"] == "delivered"
            bins = hub.post("missed-bin-collection", missed_bin(ORCHARD_WAY), headers=resident)
            assert bins.status_code == 202, bins.text
            hub.wait_until_settled(bins.json()["reference"])
            yield Portal(hub, bartec, server.url, subject, garden.json()["reference"], bins.json()["reference"])
    finally:
        server.stop()
