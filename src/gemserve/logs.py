"""Log records that name their request: a request id (``X-Request-Id``, taken when valid, else
made) and a W3C trace context (``traceparent``), kept in a context variable for the request's
task and the tasks it starts; a filter copies them onto every record, and the ``json`` format
writes one object per line.

The context variable is the only module-level object, and it holds nothing mutable: each
request binds its own :class:`RequestContext` and resets it when it ends.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Printable ASCII, as the header arrives; anything else is replaced by an id of our own.
_REQUEST_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context: the caller's trace, and this server's span in it."""

    trace_id: str
    parent_id: str
    span_id: str
    flags: str

    @property
    def traceparent(self) -> str:
        """The header to send on (and back): a child of the caller's span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    trace: TraceContext | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "gemserve_request", default=None
)


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` when printable and at most 128 characters, else a new id."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


def parse_traceparent(header: str | None) -> TraceContext | None:
    """The caller's trace context, or None for a missing or invalid header (W3C Trace Context
    level 1: version ff, all-zero ids and extra fields on version 00 are invalid)."""
    if header is None:
        return None
    match = _TRACEPARENT.fullmatch(header.strip().lower())
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceContext(trace_id, parent_id, secrets.token_hex(8), flags)


def bind(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(context)


def unbind(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()


class RequestContextFilter(logging.Filter):
    """Puts ``request_id``, ``trace_id`` and ``span_id`` on every record (None outside a
    request); attach it to handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        if context is None:
            record.request_id = getattr(record, "request_id", None)
            record.trace_id = getattr(record, "trace_id", None)
            record.span_id = getattr(record, "span_id", None)
            return True
        record.request_id = context.request_id
        trace = context.trace
        record.trace_id = None if trace is None else trace.trace_id
        record.span_id = None if trace is None else trace.span_id
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, with ``[request id]`` before the message in a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            head, sep, tail = line.partition(": ")
            return f"{head}{sep}[{request_id}] {tail}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, trace_id, span_id
    (when known), exc_info and stack_info (when given)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "trace_id", "span_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root logger: one stderr handler in ``fmt`` ("text" or "json"), with request ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python's warnings in the same format (py.warnings)
    floor = max(logging.WARNING, root.level)
    # Its debug lines carry every SQL parameter, request bodies included.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
    # Alembic narrates every plugin and migration at INFO; the store logs one line instead.
    logging.getLogger("alembic").setLevel(floor)


__all__ = [
    "JsonFormatter",
    "RequestContext",
    "RequestContextFilter",
    "TextFormatter",
    "TraceContext",
    "bind",
    "configure_logging",
    "current",
    "parse_traceparent",
    "request_id_from",
    "unbind",
]
