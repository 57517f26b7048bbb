"""Parse a Python file, for the tests that check documentation against the code.

CPython 3.11 keeps the AST builder's recursion count in interpreter-wide state, not per thread
(python/cpython#106905). In a test process with other threads alive (servers left by earlier
tests), `ast.parse` of a good file can fail with "SystemError: AST constructor recursion depth
mismatch"; CI met it once in 1,187 unit tests. The file is fine and parsing it again succeeds.
"""

import ast
from pathlib import Path

ATTEMPTS = 3


def parse_file(path: Path, filename: str | None = None) -> ast.Module:
    source = path.read_text(encoding="utf-8")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return ast.parse(source, filename=filename or str(path))
        except SystemError as error:
            if "recursion depth mismatch" not in str(error) or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
