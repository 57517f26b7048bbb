"""docs/flow.md stays true to the code: every `path.py` `Name` reference it makes names a file
that exists and a name defined in it, and its layout section mentions every package of hub/.

The references are read with `ast`, not imported, so a page naming a nested route or a
private helper is checked the same way and no module is run to check it.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from tests.support.python_source import parse_file

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "flow.md"

# `hub/intake/accept.py` `Intake.accept`: a backticked path, then only white space (a line may
# break there), then a backticked dotted name
REFERENCE = re.compile(r"`((?:hub|connectors)/[\w/]+\.py)`\s+`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`")
# any backticked path to a Python file, with or without a name after it
PATH = re.compile(r"`((?:hub|connectors)/[\w/]+\.py)`")
LAYOUT_HEADING = "## Layout of hub/"


def references(text: str) -> list[tuple[str, str]]:
    return REFERENCE.findall(text)


def _defined(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names bound at this level: functions, classes, assignments, and imports."""
    found: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                found[(alias.asname or alias.name).split(".")[0]] = node
    return found


@cache
def _module(path: str) -> ast.Module:
    return parse_file(ROOT / path, filename=path)


def problem(path: str, name: str) -> str | None:
    """None when `name` (dotted: Class.method) is defined in the file at `path`; else what is wrong."""
    if not (ROOT / path).is_file():
        return f"{path} does not exist"
    scope: list[ast.stmt] = _module(path).body
    walked: list[str] = []
    for part in name.split("."):
        node = _defined(scope).get(part)
        walked.append(part)
        if node is None:
            return f"{path} defines no {'.'.join(walked)}"
        scope = node.body if isinstance(node, ast.ClassDef) else []
    return None


def layout_section(text: str) -> str:
    start = text.index(LAYOUT_HEADING)
    following = text.find("\n## ", start + len(LAYOUT_HEADING))
    return text[start:] if following == -1 else text[start:following]


def hub_packages() -> list[str]:
    return sorted(
        path.parent.relative_to(ROOT).as_posix() + "/"
        for path in (ROOT / "hub").rglob("__init__.py")
        if path.parent != ROOT / "hub"
    )


def test_every_reference_in_the_flow_page_names_a_file_and_a_name_defined_in_it() -> None:
    found = references(DOC.read_text(encoding="utf-8"))
    # the page makes dozens; far fewer means the reference format drifted from the pattern
    assert len(found) >= 60, f"only {len(found)} references parsed from {DOC.name}"
    problems = sorted({p for path, name in found if (p := problem(path, name)) is not None})
    assert problems == []


def test_every_file_the_flow_page_names_exists() -> None:
    missing = sorted({path for path in PATH.findall(DOC.read_text(encoding="utf-8")) if not (ROOT / path).is_file()})
    assert missing == []


def test_the_layout_section_mentions_every_package_of_hub() -> None:
    section = layout_section(DOC.read_text(encoding="utf-8"))
    packages = hub_packages()
    assert "hub/api/" in packages and "hub/store/" in packages
    assert [p for p in packages if f"`{p}`" not in section] == []


def test_the_check_catches_a_missing_name_a_missing_method_and_a_missing_file() -> None:
    assert problem("hub/intake/accept.py", "Intake.accept") is None
    assert problem("hub/relay/transport.py", "DELAY_TIERS_MS") is None
    assert problem("hub/intake/accept.py", "Intake.reject") == "hub/intake/accept.py defines no Intake.reject"
    assert problem("hub/intake/accept.py", "accept") == "hub/intake/accept.py defines no accept"
    assert problem("hub/intake/nowhere.py", "Intake") == "hub/intake/nowhere.py does not exist"
    # a method is looked up in its class, not in the module
    assert problem("hub/delivery/attempt.py", "DeliveryHandler.idempotency_key") is not None


def test_the_reference_pattern_takes_a_path_then_a_name_even_across_a_line_break() -> None:
    text = "`hub/a/b.py` `C.d` and `hub/a/b.py` alone, `hub/a/b.py` (`x`), `hub/x.py`\n   `e`, `hub/y.py` `not-a-name`"
    assert references(text) == [("hub/a/b.py", "C.d"), ("hub/x.py", "e")]
