"""A council adds its own connector from an outside package, without touching the hub: the
package declares a `hub.connectors` entry point, is installed, and a route sends to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from hub.config.settings import Settings
from tests.support.processes import REPO, HubProcesses

PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "eastmoor-ticketing-connector"
        version = "1.0.0"

        [project.entry-points."hub.connectors"]
        ticketing = "eastmoor_ticketing:TicketingConnector"
    """,
    "eastmoor_ticketing/__init__.py": '''
        """Eastmoor's own connector: drops each record as a JSON ticket into a folder its ticketing tool watches."""

        import json
        from pathlib import Path

        from connectors.base import Connector, ConnectorOptions, Health, Outcome
        from hub.errors import PermanentError


        class TicketingOptions(ConnectorOptions):
            folder: str


        class TicketingConnector(Connector):
            options_model = TicketingOptions

            def send(self, record, context):
                folder = Path(self.options.folder)
                if not folder.is_dir():
                    raise PermanentError(f"ticket folder {folder} does not exist")
                ticket = folder / (context.idempotency_key.replace("/", "_") + ".json")
                # the same key again finds the same ticket: once in effect
                if not ticket.exists():
                    ticket.write_text(json.dumps({"key": context.idempotency_key, "record": record}))
                return Outcome(external_reference="TKT-" + context.reference)

            def check(self):
                return Health(Path(self.options.folder).is_dir(), "ticket folder")
    ''',
}


def build_plugin(workdir: Path) -> Path:
    source, target = workdir / "plugin-src", workdir / "site"
    for name, text in PLUGIN.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def test_a_connector_from_an_installed_plug_in_package_receives_the_routed_submissions(stack: HubProcesses) -> None:
    site = build_plugin(stack.workdir)
    tickets = stack.workdir / "tickets"
    tickets.mkdir()
    config, mappings = stack.workdir / "config", stack.workdir / "mappings"
    shutil.copytree(REPO / "config", config)
    shutil.copytree(Settings().mappings_dir, mappings)
    (config / "ticketing.yaml").write_text(
        yaml.safe_dump(
            {
                "connectors": [{"name": "ticketing", "type": "ticketing", "options": {"folder": str(tickets)}}],
                "routes": [{"form": "general-enquiry", "to": [{"connector": "ticketing"}]}],
            }
        )
    )
    (mappings / "general-enquiry.ticketing.yaml").write_text(
        "form: general-enquiry\nconnector: ticketing\nrecord:\n"
        "  subject: {const: General enquiry}\n  reference: {path: meta.reference}\n  text: {path: payload.details_of_enquiry}\n"
    )
    stack.env.update({"HUB_CONFIG_DIR": str(config), "HUB_MAPPINGS_DIR": str(mappings), "PYTHONPATH": str(site)})

    described = subprocess.run(
        [sys.executable, "-m", "hub", "connectors", "describe", "ticketing"], cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert described.returncode == 0 and "ticketing: TicketingConnector" in described.stdout, described.stderr
    stack.start_api()
    stack.start_worker()
    payload = json.loads((Settings().schemas_dir / "general-enquiry" / "samples" / "question-only.json").read_text())
    with stack.client() as client:
        reference = client.post("/v1/forms/general-enquiry/submissions", json=payload).json()["reference"]
    deliveries = {d["connector"]: d for d in stack.wait_settled([reference])[reference]["deliveries"]}
    assert deliveries["ticketing"]["state"] == "delivered"
    assert deliveries["ticketing"]["external_reference"] == f"TKT-{reference}"
    [ticket] = tickets.glob("*.json")
    assert json.loads(ticket.read_text()) == {
        "key": f"{reference}/ticketing",
        "record": {"subject": "General enquiry", "reference": reference, "text": payload["details_of_enquiry"]},
    }


def test_an_unknown_connector_type_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "typo.yaml").write_text(yaml.safe_dump({"connectors": [{"name": "tickets", "type": "ticketting"}]}))
    result = subprocess.run(
        [sys.executable, "-m", "hub", "config", "check"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HUB_CONFIG_DIR": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unknown connector type 'ticketting'; known types: amqp, email, open311, recording, rest, soap" in result.stderr
