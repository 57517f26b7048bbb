from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.embedded import EmbeddedHub, embedded_hub


@pytest.fixture()
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    with embedded_hub(tmp_path, max_body_bytes=64 * 1024) as running:
        yield running
