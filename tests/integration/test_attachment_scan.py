"""The virus scan against a real clamd with a signature database the test writes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.attachments.scan import Clamd, Clean, Infected, Unscanned
from tests.support.clamd import ClamdServer

pytestmark = pytest.mark.integration

SIGNED = b"this file stands in for malware in the hub's tests\n" * 3


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    server = ClamdServer(SIGNED)
    yield server
    server.close()


def test_file_matching_the_test_signature_is_infected(clamd: ClamdServer) -> None:
    verdict = clamd.client().scan(iter([SIGNED[:10], SIGNED[10:]]))
    assert verdict == Infected(f"{clamd.signature}.UNOFFICIAL")


def test_other_file_is_clean(clamd: ClamdServer) -> None:
    assert clamd.client().scan(iter([b"%PDF-1.4 a planning drawing"])) == Clean()


def test_scanner_down_is_unscanned_not_an_error(tmp_path: object) -> None:
    verdict = Clamd(str(tmp_path) + "/no.sock", timeout=1.0).scan(iter([SIGNED]))
    assert isinstance(verdict, Unscanned)
