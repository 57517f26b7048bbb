"""Hostile payloads get a 4xx problem detail, and the hub stays healthy."""

import json
import socket

import pytest

from hub.config.settings import Settings
from tests.support.embedded import EmbeddedHub

SAMPLE = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
URL = "/v1/forms/missed-bin-collection/submissions"


def raw_post(hub: EmbeddedHub, body: bytes, headers: dict[str, str] | None = None):
    return hub.client.post(URL, content=body, headers={"Authorization": f"Bearer {hub.key}", "Content-Type": "application/json", **(headers or {})})


def test_a_declared_hundred_megabyte_body_is_refused_before_it_is_read(hub: EmbeddedHub) -> None:
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {URL} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {hub.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n{{".encode()
        )
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413") and "body-too-large" in reply


def test_nesting_a_hundred_thousand_levels_deep_is_a_bad_request(hub: EmbeddedHub) -> None:
    response = raw_post(hub, b"[" * 60_000 + b"]" * 60_000)
    assert response.status_code in (400, 413)
    assert response.headers["content-type"] == "application/problem+json"


def test_nesting_deeper_than_the_limit_names_the_place(hub: EmbeddedHub) -> None:
    payload = dict(SAMPLE, notes=None)
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    payload["name"] = deep
    response = hub.post("missed-bin-collection", payload)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["pointer"].startswith("/name/x/x") and "nested more than 32 levels" in error["detail"]


@pytest.mark.parametrize(
    "body, words",
    [
        (b'{"notes": "\xff\xfe"}', "not valid JSON"),
        (b'{"notes": 1' + b"0" * 400 + b"}", "not valid JSON"),
        (b'{"notes": 1e999}', "not valid JSON"),
    ],
)
def test_invalid_utf8_and_huge_numbers_are_bad_requests(hub: EmbeddedHub, body: bytes, words: str) -> None:
    response = raw_post(hub, body)
    assert response.status_code == 400 and words in response.json()["detail"]


def test_a_nul_character_is_refused_with_its_field(hub: EmbeddedHub) -> None:
    response = hub.post("missed-bin-collection", dict(SAMPLE, notes="side gate\u0000"))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"pointer": "/notes", "detail": "contains a NUL character"}]


def test_an_overlong_string_is_refused_before_validation(hub: EmbeddedHub) -> None:
    hub.runtime.settings.max_string_length = 5000
    response = hub.post("missed-bin-collection", dict(SAMPLE, notes="x" * 5001))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"pointer": "/notes", "detail": "is longer than 5000 characters"}]


def test_the_hub_stays_healthy_after_hostile_input(hub: EmbeddedHub) -> None:
    raw_post(hub, b"[" * 60_000)
    raw_post(hub, b"\x00" * 1000)
    assert hub.client.get("/healthz").status_code == 200
    assert hub.post("missed-bin-collection", SAMPLE).status_code == 202
