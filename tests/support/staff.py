"""The embedded hub with a local token for every member of staff in config/clients.yaml, so tests
can act as each role and tenant."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.embedded import EmbeddedHub, embedded_hub

# staff id -> the environment variable config/clients.yaml reads its token from
TOKEN_ENV = {
    "westvale-caseworker": "WESTVALE_CASEWORKER_TOKEN",
    "westvale-admin": "WESTVALE_ADMIN_TOKEN",
    "eastmoor-operator": "EASTMOOR_OPERATOR_TOKEN",
}


@contextmanager
def staffed_hub(tmp_path: Path, **kwargs: Any) -> Iterator[tuple[EmbeddedHub, dict[str, str]]]:
    """The embedded hub and each member of staff's token by id (ict-operator and westvale-viewer
    are the embedded hub's own `staff_token` and `westvale_staff_token`)."""
    tokens = {staff: f"{staff}-{secrets.token_hex(8)}" for staff in TOKEN_ENV}
    env = {TOKEN_ENV[staff]: token for staff, token in tokens.items()}
    with embedded_hub(tmp_path, env={**env, **kwargs.pop("env", {})}, **kwargs) as hub:
        tokens["ict-operator"] = hub.staff_token
        tokens["westvale-viewer"] = hub.westvale_staff_token
        yield hub, tokens
