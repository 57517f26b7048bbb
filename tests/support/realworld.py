"""The real-world material beside the project (`../shared/realworld`), for the tests that read it.

Outside CI, a test whose material is missing (a clone with nothing beside it) is skipped, saying
which file it needed; with CI=true it fails, as CI always has `../shared` beside the clone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REALWORLD = Path(__file__).resolve().parents[2].parent / "shared" / "realworld"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str, module_level: bool = False) -> NoReturn:
    """Skip locally, fail in CI: a test that needs something never skips there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: tests must not skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def realworld(*parts: str, module_level: bool = False) -> Path:
    """A file or folder of ../shared/realworld; skips (or, in CI, fails) the test when it is missing.
    `module_level`: called while a test module is imported, where a skip skips the whole module."""
    path = REALWORLD.joinpath(*parts)
    if not path.exists():
        unavailable(f"needs {path} (the team's real-world material, ../shared/realworld beside the clone)", module_level)
    return path
