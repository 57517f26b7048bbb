"""Structured JSON logs (structlog) that carry the submission reference and never personal data.

Values of `x-pii` fields and secret values are blanked wherever they would appear in a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from structlog.types import EventDict, WrappedLogger

REDACTED = "[redacted]"
# values shorter than this are left alone: blanking "a" or "12" everywhere would ruin lines
_MIN_REDACT = 3

_secrets: set[str] = set()
_pii: ContextVar[tuple[str, ...]] = ContextVar("hub_pii", default=())


def add_secrets(values: Iterable[str]) -> None:
    _secrets.update(v for v in values if len(v) >= _MIN_REDACT)


@contextmanager
def personal_data(values: Iterable[str]) -> Iterator[None]:
    """Within this block, these values (a submission's x-pii fields) are blanked in every log line."""
    token = _pii.set(tuple(v for v in values if len(v) >= _MIN_REDACT))
    try:
        yield
    finally:
        _pii.reset(token)


def _scrub_text(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _scrub(value: Any, values: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _scrub_text(value, values)
    if isinstance(value, dict):
        return {k: _scrub(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, values) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return _scrub_text(str(value), values)


def _current() -> tuple[str, ...]:
    # longest first, so a value that contains another is blanked whole
    return tuple(sorted(set(_pii.get()) | _secrets, key=len, reverse=True))


def scrubbed(text: str) -> str:
    """`text` with the personal data and secrets of the current block blanked, for anything that
    is stored or shown to staff (a delivery's last error) as well as logged."""
    values = _current()
    return _scrub_text(text, values) if values else text


def redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    values = _current()
    if not values:
        return event
    return {k: _scrub(v, values) for k, v in event.items()}


def configure(level: str = "info", json: bool = True, stream: Any = None) -> None:
    """Routes structlog and the standard library (uvicorn, kombu) through one JSON renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        # an event below the level is dropped before the processors (time stamp, redaction) run
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # kombu and amqp are chatty at info level about every (re)connection
    logging.getLogger("amqp").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
