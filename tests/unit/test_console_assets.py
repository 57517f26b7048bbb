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
