"""The connector kit (connectors/kit.py) that outside authors test their connectors with: the
example plug-in passes it, the hub's own REST connector passes it, and a connector that breaks
the contract is told which part."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import Field

from connectors import http, kit
from connectors.base import Connector, ConnectorOptions, DeliveryContext, Health, Outcome, Secrets
from connectors.rest import RestConnector
from hub.errors import PermanentError, TransientError
from hub.logs import get_logger

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ticketing-connector"
RECORD = {"subject": "Missed bin"}
TOKEN = "kit-token-" + "93ab71"


def test_the_example_plug_ins_own_tests_pass_with_the_kit() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE), str(EXAMPLE / "tests")],
                          cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_the_hubs_rest_connector_keeps_the_contract() -> None:
    with kit.FakeBackOffice(body=b'{"id": "CASE-1"}') as office:
        connector = kit.build(RestConnector, {"url": office.url, "timeout_seconds": 1,
                                              "auth": {"type": "bearer", "token_env": "CRM_TOKEN"}}, env={"CRM_TOKEN": TOKEN})
        kit.assert_keeps_the_contract(connector, RECORD, office, secrets=[TOKEN])


class Options(ConnectorOptions):
    url: str
    token_env: str = "KIT_TOKEN"
    timeout_seconds: float = Field(default=1.0, gt=0)


class Careless(Connector):
    """A connector with the faults the kit exists to catch, one switched on per test."""

    options_model = Options
    options: Options
    fault = ""

    def __init__(self, name: str, options: Options, secrets: Secrets) -> None:
        super().__init__(name, options, secrets)
        # its own client, made outside the hub's: no allow-list, no checked addresses
        self._client = httpx.Client(timeout=options.timeout_seconds) if self.fault == "own-client" else http.client(options.timeout_seconds, 1.0)

    def send(self, record: Mapping[str, Any], context: DeliveryContext) -> Outcome:
        token = self.secrets.env(self.options.token_env)
        if self.fault == "logs-token":
            get_logger("careless").info("sending", token=token)
        try:
            response = self._client.post(self.options.url, json=dict(record), headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException:
            raise TransientError("no reply") from None
        if response.status_code >= 400:
            if self.fault == "any-4xx-retried" and response.status_code < 500:
                raise TransientError(f"HTTP {response.status_code}")
            if response.status_code >= 500 or response.status_code == 429:
                raise TransientError(f"HTTP {response.status_code}")
            raise PermanentError(f"HTTP {response.status_code}")
        return Outcome("X-1")

    def check(self) -> Health:
        return Health(True, "fine")


@pytest.mark.parametrize(("fault", "told"), [
    ("any-4xx-retried", "a back office answering 400 raised TransientError, not PermanentError"),
    ("own-client", "the connector called a host its tenants do not allow"),
    ("logs-token", None),
])
def test_a_connector_that_breaks_the_contract_is_told_which_part(monkeypatch: pytest.MonkeyPatch, fault: str, told: str | None) -> None:
    monkeypatch.setattr(Careless, "fault", fault)
    with kit.FakeBackOffice() as office:
        connector = kit.build(Careless, {"url": office.url}, env={"KIT_TOKEN": TOKEN})
        if fault == "logs-token":
            # the hub blanks a secret it handed out wherever it is logged whole: the kit checks the lines as written
            kit.assert_keeps_the_contract(connector, RECORD, office, secrets=[TOKEN])
            return
        with pytest.raises(AssertionError) as broken:
            kit.assert_keeps_the_contract(connector, RECORD, office, secrets=[TOKEN])
    assert told in str(broken.value)


def test_options_the_connector_does_not_know_are_refused_naming_them() -> None:
    from hub.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        kit.build(Careless, {"url": "http://127.0.0.1:9", "colour": "blue"})
    assert "colour: Extra inputs are not permitted" in str(refused.value)
