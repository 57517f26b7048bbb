import io
import json

import pytest

from connectors.base import Secrets
from hub.logs import configure, get_logger, personal_data


@pytest.fixture()
def captured() -> io.StringIO:
    stream = io.StringIO()
    configure("debug", json=True, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_lines_are_json_with_the_bound_reference(captured: io.StringIO) -> None:
    import structlog

    with structlog.contextvars.bound_contextvars(reference="EDC-7K3F9QXM2A"):
        get_logger("test").info("delivered", attempt=1)
    [line] = lines(captured)
    assert line["event"] == "delivered" and line["reference"] == "EDC-7K3F9QXM2A" and line["level"] == "info"


def test_personal_values_are_blanked_wherever_they_appear(captured: io.StringIO) -> None:
    with personal_data(["Gwenllian", "gwen@example.org"]):
        get_logger("test").warning("refused", reason="HTTP 400: bad email gwen@example.org for Gwenllian", extra={"who": ["Gwenllian"]})
    text = captured.getvalue()
    assert "Gwenllian" not in text and "gwen@example.org" not in text
    assert text.count("[redacted]") == 3


def test_personal_values_are_blanked_in_tracebacks_and_standard_library_logs(captured: io.StringIO) -> None:
    import logging

    with personal_data(["SW1A 1AA"]):
        try:
            raise ValueError("postcode SW1A 1AA not served")
        except ValueError:
            get_logger("test").exception("failed")
        logging.getLogger("uvicorn.error").error("saw SW1A 1AA")
    assert "SW1A 1AA" not in captured.getvalue()
    assert len(lines(captured)) == 2


def test_a_secret_handed_to_a_connector_never_reaches_a_log_line(captured: io.StringIO) -> None:
    token = Secrets({"CRM_API_TOKEN": "s3cr3t-token-value"}).env("CRM_API_TOKEN")
    get_logger("test").error("auth failed", header=f"Bearer {token}")
    assert "s3cr3t-token-value" not in captured.getvalue()


def test_outside_the_block_values_are_not_blanked(captured: io.StringIO) -> None:
    with personal_data(["Bryn"]):
        pass
    get_logger("test").info("hello Bryn")
    assert "hello Bryn" in captured.getvalue()
