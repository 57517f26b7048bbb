"""The public standards the hub ships in standards/: each file is the publisher's own, byte for
byte, with its licence and a PROVENANCE line, and the hub finds them wherever it is installed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from hub.config.bundled import folder, standards_path
from hub.config.settings import Settings
from tests.support.realworld import realworld

STANDARDS = Path(__file__).resolve().parents[2] / "standards"
LINE = re.compile(r"^(?P<origin>[\w.-]+/[\w.-]+) @ (?P<commit>[0-9a-f]{7,40}), (?P<path>.+), sha256 (?P<sha>[0-9a-f]{64})$")
FOLDERS = sorted(p.name for p in STANDARDS.iterdir() if p.is_dir())


def provenance(name: str) -> dict[str, str]:
    """path in the origin repository -> sha256, from the folder's PROVENANCE lines."""
    found: dict[str, str] = {}
    for line in (STANDARDS / name / "PROVENANCE").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"{name}/PROVENANCE: {line!r} is not 'origin @ commit, path, sha256 <hex>'"
        found[match["path"]] = match["sha"]
    return found


def shipped(name: str) -> list[str]:
    """The folder's files (relative paths), its LICENSE and PROVENANCE aside."""
    root = STANDARDS / name
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in ("LICENSE", "PROVENANCE"))


def test_every_standard_has_a_licence_and_a_provenance_line_for_each_file() -> None:
    assert FOLDERS == ["civica-universal-housing-wsdl", "govuk-forms", "odp-planning"]
    for name in FOLDERS:
        assert (STANDARDS / name / "LICENSE").stat().st_size > 500, f"{name} has no licence text"
        origins = provenance(name)
        for relative in shipped(name):
            lines = [origin for origin in origins if origin == relative or origin.endswith("/" + relative)]
            assert len(lines) == 1, f"{name}/{relative} needs exactly one PROVENANCE line, has {len(lines)}"
        assert len(origins) == len(shipped(name)), f"{name}/PROVENANCE lists files the folder does not hold"


@pytest.mark.parametrize("name", FOLDERS)
def test_each_file_matches_its_provenance_hash(name: str) -> None:
    origins = provenance(name)
    for relative in shipped(name):
        [sha] = [sha for origin, sha in origins.items() if origin == relative or origin.endswith("/" + relative)]
        assert hashlib.sha256((STANDARDS / name / relative).read_bytes()).hexdigest() == sha, f"{name}/{relative} changed"


@pytest.mark.parametrize("name", FOLDERS)
def test_each_file_is_byte_identical_to_the_teams_real_world_copy(name: str) -> None:
    for relative in shipped(name):
        original = realworld(name, relative)
        assert (STANDARDS / name / relative).read_bytes() == original.read_bytes(), f"standards/{name}/{relative} differs from {original}"


def test_a_standards_uri_names_a_shipped_file_and_never_one_outside_the_folder(tmp_path: Path) -> None:
    assert standards_path("standards:///govuk-forms/json_submission_schema_v1.json") == (
        folder("standards") / "govuk-forms" / "json_submission_schema_v1.json").resolve()
    assert standards_path("standards:///odp-planning/schemas/application.json", tmp_path) == tmp_path / "odp-planning" / "schemas" / "application.json"
    for bad in ("standards:///../config/clients.yaml", "standards:odp-planning/x.json", "standards://host/x.json"):
        with pytest.raises(ValueError):
            standards_path(bad)


def test_a_councils_own_copies_replace_the_shipped_ones(tmp_path: Path) -> None:
    # HUB_STANDARDS_DIR: the planning form's $ref then reads the council's copy of the ODP schema
    copy = tmp_path / "odp-planning" / "schemas"
    copy.mkdir(parents=True)
    (copy / "application.json").write_text('{"type": "object", "required": ["council_only"]}')
    from hub.intake.forms import load_forms

    form = load_forms(Settings().schemas_dir, tmp_path).get("planning-application")
    assert form is not None
    assert "/council_only" in [e.pointer for e in form.errors({"data": {}, "responses": [], "files": [], "metadata": {}})]
