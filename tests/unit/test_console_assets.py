"""GOV.UK Frontend ships in the hub's wheel with its licence, and PROVENANCE names every file by its sha256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import hub.console

HERE = Path(hub.console.__file__).parent / "static" / "govuk"


def _provenance() -> dict[str, str]:
    found = {}
    for line in (HERE / "PROVENANCE").read_text().splitlines():
        if line.startswith("govuk-frontend @"):
            path, digest = line.split(", ")[1], line.split("sha256 ")[1]
            found[path.removeprefix("package/dist/govuk/").removesuffix(" (GitHub)")] = digest
    return found


@pytest.mark.unit
def test_provenance_names_every_shipped_file_by_its_sha256() -> None:
    named = _provenance()
    shipped = {str(p.relative_to(HERE)) for p in HERE.rglob("*") if p.is_file() and p.name != "PROVENANCE"}
    assert set(named) == shipped
    for path, digest in named.items():
        assert hashlib.sha256((HERE / path).read_bytes()).hexdigest() == digest, path
    assert "MIT" in (HERE / "LICENSE.txt").read_text()


def test_the_wheel_carries_the_console_stylesheet_script_fonts_licence_and_provenance(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)], check=True)
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in _provenance():
        assert f"hub/console/static/govuk/{path}" in names, path
    assert "hub/console/static/govuk/PROVENANCE" in names


@pytest.mark.unit
def test_the_hub_app_serves_the_stylesheet_and_the_fonts_it_names(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from hub.api.app import create_app
    from hub.config.settings import Settings
    from hub.runtime import Runtime

    runtime = Runtime.build(Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}"), {})
    try:
        with TestClient(create_app(runtime)) as http:
            css = http.get("/console/static/govuk/govuk-frontend.min.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            assert css.content == (HERE / "govuk-frontend.min.css").read_bytes()
            font = http.get("/console/static/govuk/assets/fonts/bold-b542beb274-v2.woff2")
            assert font.status_code == 200 and font.content == (HERE / "assets/fonts/bold-b542beb274-v2.woff2").read_bytes()
            assert "url(/console/static/govuk/assets/fonts/bold-b542beb274-v2.woff2)" in css.text
            assert http.get("/console/static/govuk/nothing.css").status_code == 404
    finally:
        runtime.close()
