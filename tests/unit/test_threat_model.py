"""docs/threat-model.md stays true: every test it names exists, every trust boundary is looked at
under all six STRIDE categories, and every row says which control answers it, which test shows it
and which OWASP API Security Top 10 2023 item or ASVS 5.0 requirement it maps to."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.python_source import parse_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "threat-model.md"
BOUNDARIES = ("Portal", "Staff browser", "Back office", "Broker", "Database", "Object store", "Identity provider")
STRIDE = "STRIDE"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
OWASP_API = re.compile(r"\bAPI(\d+)\b")
ASVS = re.compile(r"\bV(\d+)\.(\d+)\.(\d+)\b")


@dataclass(frozen=True)
class Row:
    boundary: str
    stride: str
    cells: list[str]

    @property
    def text(self) -> str:
        return " | ".join(self.cells)


def rows(text: str) -> list[Row]:
    """The STRIDE rows of each numbered boundary section (`## 1. Portal` …)."""
    found: list[Row] = []
    boundary = ""
    for line in text.splitlines():
        heading = re.match(r"## \d+\. (.+)", line)
        if heading:
            boundary = heading.group(1).strip()
            continue
        if line.startswith("## "):
            boundary = ""
        if boundary and line.startswith("| ") and not line.startswith("| STRIDE") and not line.startswith("| ---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            found.append(Row(boundary, cells[0], cells))
    return found


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions in a file, at module level or in a class."""
    tree = parse_file(path)
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


def missing_tests(text: str, root: Path) -> list[str]:
    missing = []
    for file, name in TEST_REFERENCE.findall(text):
        path = root / file
        if not path.is_file():
            missing.append(f"{file} does not exist")
        elif name not in defined_tests(path):
            missing.append(f"{file} has no {name}")
    return missing


def row_problems(found: list[Row]) -> list[str]:
    problems = []
    for row in found:
        where = f"{row.boundary}, {row.stride}: {row.cells[1][:60]!r}"
        if row.stride not in STRIDE or len(row.stride) != 1:
            problems.append(f"{where}: the first cell must be one STRIDE letter")
        if len(row.cells) != 5:
            problems.append(f"{where}: {len(row.cells)} cells, expected threat, control, test and mapping")
            continue
        if not TEST_REFERENCE.search(row.cells[3]) and "**residual**" not in row.cells[3]:
            problems.append(f"{where}: names no test and is not marked residual")
        mapping = row.cells[4]
        if not OWASP_API.search(mapping) and not ASVS.search(mapping):
            problems.append(f"{where}: maps to neither an OWASP API item nor an ASVS requirement")
        problems += [f"{where}: API{n} is not one of API1..API10" for n in OWASP_API.findall(mapping) if not 1 <= int(n) <= 10]
        problems += [f"{where}: V{c}.{s}.{r} is not an ASVS 5.0 chapter" for c, s, r in ASVS.findall(mapping) if not 1 <= int(c) <= 17]
    return problems


def test_every_test_the_threat_model_names_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert len(TEST_REFERENCE.findall(text)) >= 60, "the page names fewer tests than it should"
    assert missing_tests(text, ROOT) == []


def test_every_boundary_is_looked_at_under_all_six_stride_categories() -> None:
    found = rows(PAGE.read_text(encoding="utf-8"))
    for boundary in BOUNDARIES:
        seen = {row.stride for row in found if row.boundary == boundary}
        assert seen == set(STRIDE), f"{boundary}: {sorted(set(STRIDE) - seen)} missing"


def test_every_row_names_its_control_test_and_mapping() -> None:
    found = rows(PAGE.read_text(encoding="utf-8"))
    assert {row.boundary for row in found} == set(BOUNDARIES)
    assert row_problems(found) == []


def test_the_checks_catch_a_missing_test_a_missing_file_and_a_row_without_a_test_or_mapping(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_there() -> None:\n    pass\n")
    text = (
        "## 1. Portal\n\n| STRIDE | threat | control | test | OWASP / ASVS |\n| --- | --- | --- | --- | --- |\n"
        "| S | t | c | `tests/test_a.py::test_there` | API2 |\n"
        "| T | t | c | `tests/test_a.py::test_gone` | V2.2.1 |\n"
        "| R | t | c | `tests/test_b.py::test_there` | API11 |\n"
        "| I | t | c | nothing | none |\n"
    )
    assert missing_tests(text, tmp_path) == ["tests/test_a.py has no test_gone", "tests/test_b.py does not exist"]
    problems = row_problems(rows(text))
    assert any("API11 is not one of" in problem for problem in problems)
    assert any("names no test and is not marked residual" in problem for problem in problems)
    assert any("maps to neither" in problem for problem in problems)
    assert not any(problem.startswith("Portal, S:") for problem in problems)
