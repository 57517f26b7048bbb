"""The shipped recording connector (connectors/testing.py): `type: recording` keeps what each back
office would get in memory, answers REC- references, refuses sends on request, and keeps the
contract every connector keeps (a production start refuses it: tests/unit/test_production.py)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connectors import kit
from connectors.base import Health, Outcome, Secrets
from connectors.registry import ConnectorRegistry
from connectors.testing import RecordingConnector
from hub.config.files import ConnectorConfig
from hub.config.settings import Settings
from hub.errors import ConfigError, PermanentError, TransientError
from hub.outbound.guard import AllowList
from tests.support.embedded import embedded_hub

RECORD = {"subject": "Missed bin", "uprn": "100023336956"}


@pytest.fixture(autouse=True)
def _forget_what_was_recorded() -> Iterator[None]:
    RecordingConnector.clear()
    yield
    RecordingConnector.clear()


def recorder(options: dict[str, object] | None = None, name: str = "preview") -> RecordingConnector:
    connector = kit.build(RecordingConnector, options or {}, name=name)
    assert isinstance(connector, RecordingConnector)
    return connector


def installed_registry() -> ConnectorRegistry:
    registry = ConnectorRegistry.from_entry_points()
    assert "recording" in registry.known(), (
        "no `recording` in the hub.connectors entry points: reinstall the project (pip install -e .) after pyproject.toml changed")
    return registry


def test_type_recording_is_found_through_the_installed_entry_point() -> None:
    registry = installed_registry()
    connector = registry.build(ConnectorConfig(name="preview", type="recording"), Secrets({}))
    assert isinstance(connector, RecordingConnector)
    assert connector.send(RECORD, kit.context(connector)) == Outcome("REC-000001")


def test_keeps_each_record_with_its_delivery_context_per_connector_name() -> None:
    first, second = recorder(name="crm-preview"), recorder(name="waste-preview")
    first.send(RECORD, kit.context(first, reference="EDC-0000000001"))
    second.send({"bins": 2}, kit.context(second, reference="EDC-0000000002", form_id="bulky-waste-collection"))
    first.send({"subject": "Fly-tipping"}, kit.context(first, reference="EDC-0000000003", attempt=3))
    [one, three] = RecordingConnector.received("crm-preview")
    assert one.record == RECORD and one.external_reference == "REC-000001"
    assert (one.context.reference, one.context.idempotency_key, one.context.attempt) == ("EDC-0000000001", "EDC-0000000001/crm-preview", 1)
    assert three.record == {"subject": "Fly-tipping"} and three.context.attempt == 3 and three.external_reference == "REC-000002"
    [two] = RecordingConnector.received("waste-preview")
    assert two.record == {"bins": 2} and two.context.form_id == "bulky-waste-collection" and two.external_reference == "REC-000001"
    assert RecordingConnector.received("nobody") == []


def test_a_record_changed_after_it_was_sent_is_kept_as_it_was_sent() -> None:
    connector = recorder()
    record = {"data": [{"name": "Aoife"}]}
    connector.send(record, kit.context(connector))
    record["data"][0]["name"] = "someone else"
    assert RecordingConnector.received("preview")[0].record == {"data": [{"name": "Aoife"}]}


def test_the_same_idempotency_key_gets_the_same_reference_and_each_arrival_is_recorded() -> None:
    connector = recorder()
    first = connector.send(RECORD, kit.context(connector, reference="EDC-0000000001"))
    again = connector.send(RECORD, kit.context(connector, reference="EDC-0000000001", attempt=2))
    other = connector.send(RECORD, kit.context(connector, reference="EDC-0000000002"))
    assert (first, again, other) == (Outcome("REC-000001"), Outcome("REC-000001"), Outcome("REC-000002"))
    assert [(r.context.attempt, r.external_reference) for r in RecordingConnector.received("preview")] == [
        (1, "REC-000001"), (2, "REC-000001"), (1, "REC-000002")]


def test_sends_from_many_threads_are_all_kept_with_distinct_references() -> None:
    connector = recorder()

    def send(n: int) -> None:
        for i in range(50):
            connector.send({"n": n, "i": i}, kit.context(connector, reference=f"EDC-{n:02d}{i:08d}"))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = RecordingConnector.received("preview")
    assert len(received) == 400
    assert sorted(r.external_reference for r in received) == [f"REC-{n:06d}" for n in range(1, 401)]


def test_fail_first_transient_refuses_each_delivery_that_many_times_then_accepts_it() -> None:
    connector = recorder({"fail_first": 2, "failure": "transient"})
    for attempt in (1, 2):
        with pytest.raises(TransientError, match=r"preview \(recording\) refuses the first 2 send\(s\) of each delivery"):
            connector.send(RECORD, kit.context(connector, attempt=attempt))
    assert RecordingConnector.received("preview") == []
    assert connector.send(RECORD, kit.context(connector, attempt=3)) == Outcome("REC-000001")
    # another delivery is refused its first two sends too
    with pytest.raises(TransientError):
        connector.send(RECORD, kit.context(connector, reference="EDC-0000000002"))
    assert [r.context.attempt for r in RecordingConnector.received("preview")] == [3]


def test_fail_first_without_failure_is_transient() -> None:
    connector = recorder({"fail_first": 1})
    with pytest.raises(TransientError):
        connector.send(RECORD, kit.context(connector))
    assert connector.send(RECORD, kit.context(connector, attempt=2)) == Outcome("REC-000001")


def test_failure_permanent_raises_permanent_error() -> None:
    connector = recorder({"fail_first": 1, "failure": "permanent"})
    with pytest.raises(PermanentError, match="refuses the first 1 send"):
        connector.send(RECORD, kit.context(connector))
    assert RecordingConnector.received("preview") == []


@pytest.mark.parametrize(("options", "named"), [
    ({"fail_first": -1}, "fail_first: Input should be greater than or equal to 0"),
    ({"fail_first": "two"}, "fail_first: Input should be a valid integer"),
    ({"fail_first": 1, "failure": "sometimes"}, "failure: Input should be 'transient' or 'permanent'"),
    ({"failure": "permanent"}, "failure: 'permanent' has no effect without fail_first"),
    ({"url": "http://127.0.0.1:9"}, "url: Extra inputs are not permitted"),
])
def test_a_bad_option_is_refused_naming_it(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        recorder(options)
    assert "connector 'preview' (under-test) has invalid options" in str(refused.value)
    assert named in str(refused.value)


def test_keeps_the_contract_a_connector_keeps() -> None:
    # kit.assert_keeps_the_contract drives an HTTP back office; these are its points for a
    # connector that calls none
    connector = recorder({"fail_first": 1})
    with pytest.raises(TransientError):
        connector.send(RECORD, kit.context(connector))
    assert isinstance(connector.send(RECORD, kit.context(connector, attempt=2)), Outcome)
    assert isinstance(connector.send(RECORD, kit.context(connector, attempt=3)), Outcome), "a resend must be accepted too"
    health = connector.check()
    assert isinstance(health, Health) and health.ok
    assert "2 received" in health.detail and "production refuses it" in health.detail
    assert connector.describe() == ("preview: RecordingConnector, keeps every record in this process's memory (development only); "
                                    "refuses the first 1 send(s) of each delivery (transient)")
    # it calls no host, so tenants that allow only another one change nothing
    fenced = kit.build(RecordingConnector, {}, allowed_hosts=("backoffice.council.example",), name="fenced")
    assert fenced.send(RECORD, kit.context(fenced)) == Outcome("REC-000001")
    assert fenced.outbound == AllowList(("backoffice.council.example",), owner="the kit's tenant")


def test_a_posted_submission_arrives_in_the_recorder_and_its_status_says_delivered(tmp_path: Path) -> None:
    installed_registry()
    # the demo configuration, with the CRM swapped for a recorder that refuses each first send
    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    connectors_file = config / "connectors.yaml"
    connectors = yaml.safe_load(connectors_file.read_text())
    [crm] = [c for c in connectors["connectors"] if c["name"] == "crm"]
    crm.clear()
    crm.update({"name": "crm", "type": "recording", "options": {"fail_first": 1}})
    connectors_file.write_text(yaml.safe_dump(connectors))
    sample = json.loads((Settings().schemas_dir / "missed-bin-collection" / "samples" / "general-uprn.json").read_text())
    with embedded_hub(tmp_path, config_dir=config) as hub:
        reference = hub.post("missed-bin-collection", sample).json()["reference"]
        [delivery] = hub.wait_until_settled(reference)["deliveries"]
        assert hub.crm.cases() == [], "the CRM simulator was called: the recorder is not in its place"
    assert delivery["connector"] == "crm" and delivery["state"] == "delivered"
    assert delivery["external_reference"] == "REC-000001" and delivery["attempts"] == 2
    [received] = RecordingConnector.received("crm")
    assert received.context.reference == reference and received.context.attempt == 2
    assert received.context.idempotency_key == f"{reference}/crm" and received.context.tenant == "eastmoor"
    # the record the CRM mapping builds, as the CRM would have got it
    assert received.record["client_unique_identifier"] == f"{reference}/crm"
    assert received.record["data"][0]["source_ref"] == reference
    assert received.record["data"][0]["first_name"] == sample["name"]["first"] == "Aoife"
