"""Realistic, varied `missed-bin-collection` submissions of about 1 KB for the load generator.

Every payload is valid against `schemas/missed-bin-collection/1.json` (checked in `check()`).
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "missed-bin-collection" / "1.json"

FIRST = ["Aoife", "Siân", "Zoë", "Gareth", "Mohammed", "Priya", "Oluwaseun", "Łukasz", "Niamh", "José",
         "Eilidh", "Dafydd", "Chloé", "Ama", "Tomás", "Hannah", "Rhiannon", "Kwame", "Fatima", "Ciarán"]
LAST = ["McCann", "ap Rhys", "O'Connor-Ní Bhriain", "Jones", "Khan", "Patel", "Adeyemi", "Nowak", "Ó Súilleabháin",
        "García", "MacLeod", "Llewellyn", "Dubois", "Mensah", "Byrne", "Smith-Whitworth", "Evans", "Boateng"]
STREETS = ["Seacliff Road", "Gray's Hill", "Church Lane", "Station Road", "Victoria Terrace", "Mill Brae",
           "Castle Street", "Orchard Close", "Heol y Coed", "Bridge End", "Queen's Parade", "Meadow View"]
TOWNS = [("Bangor", "BT20"), ("Eastmoor", "EM4"), ("Westvale", "WV11"), ("Llandudno", "LL30"),
         ("Inverness", "IV2"), ("Harrogate", "HG1"), ("Truro", "TR1"), ("Carlisle", "CA3")]
BINS = ["general", "recycling", "food", "garden", "glass"]
LOCATIONS = ["front_of_property", "side_of_property", "back_lane", "communal_bin_store"]
NOTES = [
    "Bin was out by 7am on the kerb as usual and the rest of the street was emptied.",
    "The crew seemed to miss our side of the road entirely; the neighbours' bins are still full too.",
    "Lid was closed and nothing was overfilled. This is the second week running it has been missed.",
    "The lorry came past at about 10am but did not stop. Access was clear, no cars parked in the lane.",
    "Please could the crew check the communal store at the back: the gate code is on the council file.",
    "My elderly mother lives here and cannot take the bin back out again, so an early return would help.",
    "It was put out the night before because of the early start. It has been rained on and is now heavy.",
    "Food caddy was out with the liner tied. Foxes have been at the bags so please come back soon.",
]


def payload(rng: random.Random, index: int) -> dict[str, Any]:
    """One submission; `index` makes the e-mail and notes unique, so no two bodies are equal."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    town, outward = rng.choice(TOWNS)
    body: dict[str, Any] = {
        "name": {"first": first, "last": last},
        "email": f"{first.lower().encode('ascii', 'ignore').decode() or 'resident'}.{index}@example.org",
        "bin_type": rng.choice(BINS),
        "collection_date": (date(2026, 11, 2) + timedelta(days=rng.randrange(60))).isoformat(),
        "bin_location": rng.choice(LOCATIONS),
    }
    if rng.random() < 0.7:
        body["phone"] = rng.choice(["07700 900", "+44 7700 900", "01632 960"]) + f"{rng.randrange(1000):03d}"
    if rng.random() < 0.6:
        body["address"] = {"uprn": f"1000{rng.randrange(10**8):08d}"}
    else:
        body["address"] = {
            "line1": f"{rng.randrange(1, 250)} {rng.choice(STREETS)}",
            "line2": rng.choice(["", "Flat 2", "Ground floor flat", "The Old Forge"]),
            "town": town,
            "postcode": f"{outward} {rng.randrange(10)}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
        }
        if not body["address"]["line2"]:
            del body["address"]["line2"]
    # notes bring the body to about 1 KB, as a resident's free text does
    notes = " ".join(rng.sample(NOTES, k=len(NOTES)))
    body["notes"] = f"Report {index}. " + notes[: rng.randrange(640, 840)].rstrip()
    return body


def payloads(count: int, seed: int = 2026, start: int = 0) -> list[bytes]:
    """`count` encoded submissions (UTF-8 JSON), reproducible for a seed."""
    rng = random.Random(seed)
    return [json.dumps(payload(rng, start + i), ensure_ascii=False).encode() for i in range(count)]


def check(count: int = 200) -> tuple[int, float]:
    """Validates a sample against the real schema; returns (invalid count, mean size in bytes)."""
    import jsonschema_rs

    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()), validate_formats=True)
    bodies = payloads(count)
    invalid = sum(0 if validator.is_valid(json.loads(b)) else 1 for b in bodies)
    return invalid, sum(len(b) for b in bodies) / len(bodies)


if __name__ == "__main__":
    print(check())
    print(payloads(1)[0].decode())
