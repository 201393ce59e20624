"""Structured logs: one line per event, logfmt or JSON, with the active trace's ids.

Owns the line format (`[telemetry] log_format`): `time` (RFC 3339, UTC,
milliseconds), `level`, `logger`, `msg`, then `trace_id` and `span_id` when
a span is active (so a line leads to its trace), then any `extra=` fields of
the call, then `exc` for a traceback. Also installing that format on the root
logger, idempotently.

Must not: decide what is logged; callers keep using `logging` as usual.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

FORMATS = ("logfmt", "json")

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "trace_id",
    "span_id",
    "taskName",
}


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (hex) of the current span, or "" when there is none."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ordered fields of one line."""
    out: dict[str, Any] = {
        "time": rfc3339(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    trace_id = getattr(record, "trace_id", "")
    if trace_id:
        out["trace_id"] = trace_id
        out["span_id"] = getattr(record, "span_id", "")
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    elif record.exc_text:
        out["exc"] = record.exc_text
    return out


def rfc3339(created: float) -> str:
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields_of(record), default=str, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields_of(record).items())


def logfmt_value(value: Any) -> str:
    """A logfmt value: bare when it can be, else double-quoted with \\ \" \\n escaped."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t') and text.isprintable():
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


class _PullnixHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it."""


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Send the root logger's records to stderr, one `log_format` line each."""
    if log_format not in FORMATS:
        raise ValueError(f"telemetry.log_format: {log_format!r} is not one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PullnixHandler)]:
        root.removeHandler(old)
    handler = _PullnixHandler(sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(level)
