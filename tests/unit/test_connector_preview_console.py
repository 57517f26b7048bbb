"""`Connector.preview`: what `send` would put on the wire, built by the same code, nothing sent and
no credential shown, checked against what a recording back office receives from `send`."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl

from connectors import kit
from connectors.base import HIDDEN
from connectors.open311 import Open311Connector
from connectors.rest import RestConnector

RECORD = {"service_code": "missed-bin", "description": "Bin not emptied, Tŷ Gwyn", "lat": 51.5, "long": -3.2,
          "attributes": {"bin": "garden"}}


def test_a_rest_preview_is_the_body_send_posts_with_the_token_hidden() -> None:
    token = "tok-" + secrets.token_hex(8)
    with kit.FakeBackOffice() as office:
        rest = kit.build(RestConnector, {"url": office.url + "/cases", "auth": {"type": "bearer", "token_env": "T"},
                                         "secret_headers": {"X-Api-Key": "K"}}, {"T": token, "K": "key-" + token})
        ctx = kit.context(rest)
        shown = rest.preview(RECORD, ctx)
        assert office.received == []
        rest.send(RECORD, ctx)
    [sent] = office.received
    assert shown.body.encode() == sent.body and shown.target == f"POST {office.url}/cases"
    headers = dict(shown.headers)
    assert headers["Authorization"] == f"Bearer {HIDDEN}" and headers["X-Api-Key"] == HIDDEN
    assert headers["Idempotency-Key"] == sent.headers["idempotency-key"] == ctx.idempotency_key
    assert token not in repr(shown)


def test_an_open311_preview_is_the_form_body_send_posts_with_the_api_key_hidden() -> None:
    key = "api-" + secrets.token_hex(8)
    with kit.FakeBackOffice(body=b'[{"service_request_id": "SR-1"}]') as office:
        open311 = kit.build(Open311Connector, {"endpoint": office.url + "/open311/v2", "api_key_env": "KEY"}, {"KEY": key})
        ctx = kit.context(open311)
        shown = open311.preview(RECORD, ctx)
        open311.send(RECORD, ctx)
    [sent] = office.received
    assert parse_qsl(shown.body) == [(k, HIDDEN if k == "api_key" else v) for k, v in parse_qsl(sent.body.decode())]
    assert key not in shown.body and shown.target.endswith("/open311/v2/requests.json")
