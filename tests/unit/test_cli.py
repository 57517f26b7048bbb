"""The `hub` command as ICT staff run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hub.config.files import hash_api_key
from hub.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def hub(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=REPO, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def test_config_check_passes_on_the_shipped_configuration() -> None:
    result = hub("config", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration OK"


COMPOSE_ENV = {"CRM_URL": "https://crm.council.example", "CRM_API_TOKEN": "t" * 24}


def test_config_check_passes_on_the_compose_starter_with_the_forms_and_mappings_the_image_ships() -> None:
    # the image ships every form and every mapping; a council routes the forms it offers only
    result = hub("config", "check", env={"HUB_CONFIG_DIR": str(REPO / "deploy" / "config"), **COMPOSE_ENV})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration OK"


def test_config_check_reports_a_form_a_council_offers_but_routes_nowhere(tmp_path: Path) -> None:
    starter = (REPO / "deploy" / "config" / "hub.yaml").read_text()
    unrouted = starter.replace("  - form: report-fly-tipping\n    to:\n      - connector: crm\n", "")
    assert unrouted != starter
    (tmp_path / "hub.yaml").write_text(unrouted)
    result = hub("config", "check", env={"HUB_CONFIG_DIR": str(tmp_path), **COMPOSE_ENV})
    assert result.returncode == 1
    assert "form 'report-fly-tipping' has no route, so its submissions would reach no back office" in result.stderr
    assert "missed-bin-collection' has no route" not in result.stderr


def test_config_check_lists_every_problem_by_file_and_line(tmp_path: Path) -> None:
    settings = Settings()
    config, mappings = tmp_path / "config", tmp_path / "mappings"
    shutil.copytree(settings.config_dir, config)
    shutil.copytree(settings.mappings_dir, mappings)
    routes = (config / "routes.yaml").read_text().replace("connector: garden-waste", "connector: garden-wast")
    (config / "routes.yaml").write_text(routes)
    case = mappings / "missed-bin-collection.crm.cases" / "general-uprn.json"
    case.write_text(case.read_text().replace('"function": "case_to_crm_create_update_case"', '"function": "something_else"'))
    result = hub("config", "check", env={"HUB_CONFIG_DIR": str(config), "HUB_MAPPINGS_DIR": str(mappings)})
    assert result.returncode == 1
    line = next(n for n, text in enumerate(routes.splitlines(), 1) if "garden-wast" in text)
    assert f"{config / 'routes.yaml'}:{line}: route for 'missed-bin-collection' names unknown connector 'garden-wast'" in result.stderr
    assert f"{case}: mapping produced a different record than expected: at /function: got 'case_to_crm_create_update_case', expected 'something_else'" in result.stderr
    assert "2 problem(s) found" in result.stderr


def test_demo_once_delivers_every_sample_and_prints_what_each_back_office_received(tmp_path: Path) -> None:
    result = hub("demo", "--once", "--port", "0", env={"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"})
    assert result.returncode == 0, result.stdout + result.stderr
    samples = sorted((REPO / "schemas").glob("*/samples/*.json"))
    for path in samples:
        rows = re.findall(rf"^{path.parent.parent.name}\s+{path.stem}\s+[A-Z]{{3}}-\w{{10}}\s+(\S+)\s+(\S+)", result.stdout, re.M)
        assert rows and all(state == "delivered" for _, state in rows), (path, rows)
    # the CRM's own case references are shown
    assert re.search(r"^missed-bin-collection\s+general-uprn\s+\S+\s+crm\s+delivered\s+CAS-\d{6}", result.stdout, re.M)
    assert "crm (http://127.0.0.1:" in result.stdout
    assert re.search(r"(\d+) of \1 deliveries delivered", result.stdout)
    assert (tmp_path / "demo.log").exists()


def test_demo_once_fails_when_a_sample_reaches_no_back_office(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    # links, not copies: a form may $ref a published standard's schema beside the repository
    for form in Settings().schemas_dir.iterdir():
        (schemas / form.name).symlink_to(form, target_is_directory=True)
    (schemas / "dog-fouling" / "samples").mkdir(parents=True)
    (schemas / "dog-fouling" / "1.json").write_text('{"type": "object"}')
    (schemas / "dog-fouling" / "samples" / "park.json").write_text('{"where": "Victoria Park"}')
    result = hub(
        "demo", "--once", "--port", "0", "--timeout", "5",
        env={"HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "HUB_SCHEMAS_DIR": str(schemas)},
    )
    assert result.returncode == 1, result.stdout
    assert re.search(r"dog-fouling\s+park\s+\S+\s+-\s+no route", result.stdout)
    assert "NOT ALL DELIVERED" in result.stdout


def test_new_key_prints_a_key_and_the_hash_to_configure() -> None:
    result = hub("clients", "new-key")
    key = re.search(r"API key .*: (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    digest = re.search(r"api_key_sha256 .*: ([0-9a-f]{64})", result.stdout).group(1)  # type: ignore[union-attr]
    assert hash_api_key(key) == digest


def test_config_check_finds_an_open311_service_that_names_no_form(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(Settings().config_dir, config)
    services = config / "open311" / "services.yaml"
    services.write_text(services.read_text().replace("form: report-fly-tipping", "form: report-fly-tiping", 1))
    result = hub("config", "check", env={"HUB_CONFIG_DIR": str(config)})
    assert result.returncode == 1
    assert "names unknown form 'report-fly-tiping'" in result.stderr


def test_connectors_describe_lists_a_soap_connectors_operations_and_argument_types() -> None:
    result = hub("connectors", "describe", "revenues")
    assert result.returncode == 0, result.stderr
    assert "CreateArrearsAgreement" in result.stdout and "GetArrearsAgreementByRef" in result.stdout


def test_connectors_check_prints_a_table_and_fails_when_a_back_office_cannot_be_reached() -> None:
    result = hub("connectors", "check", env={"CRM_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t"})
    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("crm "))
    assert "FAILING" in row and "cannot reach http://127.0.0.1:9" in row
    assert result.stdout.splitlines()[0].split() == ["connector", "state", "detail"]


def test_demo_keeps_serving_prints_a_working_curl_line_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import shutil as which
    import signal
    import time

    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env = {**clean, "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not any("Press Ctrl-C" in line for line in lines):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(lines)
            lines.append(demo.stdout.readline())  # type: ignore[union-attr]
        text = "".join(lines)
        assert re.search(r"The demo client's API key: \S+", text)
        curl = text[text.index("curl -s") : text.index("Press Ctrl-C")].strip()
        if which.which("curl"):
            reply = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30).stdout
            assert '"reference":"EDC-' in reply and "/v1/submissions/EDC-" in reply
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
