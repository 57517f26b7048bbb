"""Only e-mail and REST connectors send `attach: file` files. A mapping that gives one to an
Open311, SOAP or AMQP connector is a `hub config check` problem naming the file and the field and
what to map instead, and such a connector refuses a record holding a file rather than drop it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.base import Connector, DeliveryContext, Secrets
from connectors.registry import ConnectorRegistry
from hub.attachments.delivery import AttachedFile
from hub.config.checks import check_configuration
from hub.config.connector_hosts import connector_allow_list
from hub.config.files import load_config
from hub.config.settings import Settings
from hub.errors import PermanentError

# (mapping file, connector, its type)
NO_FILES = [
    ("report-fly-tipping.street-cleansing.yaml", "street-cleansing", "Open311Connector"),
    ("rent-arrears-payment-plan.revenues.yaml", "revenues", "SoapConnector"),
    ("benefits-change-of-circumstances.benefits-amqp.yaml", "benefits-amqp", "AmqpConnector"),
]


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}


def with_mappings(tmp_path: Path) -> Settings:
    mappings = tmp_path / "mappings"
    shutil.copytree(Settings().mappings_dir, mappings)
    return Settings(mappings_dir=mappings)


def add_field(settings: Settings, name: str, line: str) -> Path:
    path = settings.mappings_dir / name
    text = path.read_text(encoding="utf-8")
    assert "\nrecord:\n" in text
    path.write_text(text.replace("\nrecord:\n", f"\nrecord:\n{line}\n", 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "connector", "kind"), NO_FILES)
def test_config_check_names_the_mapping_and_field_that_give_files_to_a_connector_that_cannot_send_them(
        tmp_path: Path, name: str, connector: str, kind: str) -> None:
    settings = with_mappings(tmp_path)
    before = set(check_configuration(settings, environ()))
    path = add_field(settings, name, "  evidence: {path: attachments.photo_uploads, attach: file}")
    new = sorted(set(check_configuration(settings, environ())) - before)
    [problem] = [p for p in new if "cannot send files" in p]
    assert problem.startswith(f"{path}: connector {connector!r} ({kind}) cannot send files")
    assert "record.evidence" in problem and "attach: base64" in problem and "attachments.<field>[n].url" in problem


def test_config_check_takes_files_for_email_and_rest_and_base64_or_links_for_the_others(tmp_path: Path) -> None:
    settings = with_mappings(tmp_path)
    before = set(check_configuration(settings, environ()))
    assert not [p for p in before if "cannot send files" in p]  # the shipped mappings
    add_field(settings, "report-fly-tipping.crm.yaml", "  evidence: {path: attachments.photo_uploads, attach: file}")
    add_field(settings, "report-fly-tipping.street-cleansing.yaml", "  evidence: {path: 'attachments.photo_uploads[0]', attach: base64}")
    add_field(settings, "rent-arrears-payment-plan.revenues.yaml", "  evidence: {path: 'attachments.photos[0].url'}")
    assert not [p for p in check_configuration(settings, environ()) if "cannot send files" in p]


@pytest.fixture
def built() -> Iterator[dict[str, Connector]]:
    settings, env = Settings(), environ()
    config = load_config(settings.config_dir, env, settings.standards_dir)
    registry = ConnectorRegistry.from_entry_points()
    found = {name: registry.build(config.connectors[name], Secrets(env), connector_allow_list(config, config.connectors[name]))
             for _, name, _ in NO_FILES}
    yield found
    for connector in found.values():
        connector.close()


def photo() -> AttachedFile:
    def chunks() -> Iterator[bytes]:
        raise AssertionError("a connector that refuses files must not read them")

    return AttachedFile("photos-1.jpg", "image/jpeg", 10, "att_x", chunks)


@pytest.mark.parametrize(("_name", "connector", "kind"), NO_FILES)
def test_a_connector_that_cannot_send_files_refuses_a_record_holding_one_before_calling_anyone(
        built: dict[str, Connector], _name: str, connector: str, kind: str) -> None:
    context = DeliveryContext("EDC-1", connector, 1, f"EDC-1/{connector}", 1, "eastmoor", "report-fly-tipping")
    with pytest.raises(PermanentError) as refused:
        built[connector].send({"service_code": "FLYTIP", "case": {"photos": [photo()]}}, context)
    reason = str(refused.value)
    assert f"connector {connector!r} ({kind}) cannot send files" in reason
    assert "record.case.photos[0]" in reason and "attach: base64" in reason
