"""The framing both of pullnix's sockets speak: the helper's and the agent's local API.

Owns what every message on either socket shares: one JSON object per line
(UTF-8, `\\n`-terminated), at most `MAX_MESSAGE` bytes, `"v": 1` in every
request and every answer, and the error envelope `{"v":1, "ok":false,
"error": <code>, "message": <human text>, ...}` with the codes in
`ErrorCode`. Also the readers of a request's fields, which say which field is
wrong and what was expected. Pure: no sockets, no files.

Must not: know any request (that is `protocol.py` for the helper,
`controller/localapi.py` for the agent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 * 1024


class ErrorCode(StrEnum):
    BAD_JSON = "bad-json"
    TOO_LARGE = "too-large"
    BAD_VERSION = "bad-version"
    UNKNOWN_OP = "unknown-op"
    UNKNOWN_FIELD = "unknown-field"
    BAD_FIELD = "bad-field"
    BAD_STORE_PATH = "bad-store-path"
    FORBIDDEN = "forbidden"
    BUSY = "busy"
    NOT_FOUND = "not-found"
    NOTHING_TO_DO = "nothing-to-do"
    STARTING = "starting"
    INTERNAL = "internal"
    OVERLOADED = "overloaded"  # too many connections: try again shortly
    # The agent's local API only:
    TIMEOUT = "timeout"
    STOPPING = "stopping"
    REFUSED = "refused"


class ProtocolError(Exception):
    """A request that is refused; `code` goes on the wire, the message says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_line(line: bytes) -> dict[str, Any]:
    """One framed message to a JSON object, or ProtocolError."""
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE} bytes")
    try:
        value = json.loads(line, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not JSON: {exc}") from None
    except RecursionError:  # `[[[[…`: 64 KiB nest far deeper than Python's parser goes
        raise ProtocolError(ErrorCode.BAD_JSON, "not JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "a message must be a JSON object")
    return value


def check_version(message: Mapping[str, Any], who: str) -> None:
    """ProtocolError unless `message` speaks this protocol version; `who` answers."""
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            f"protocol version {message.get('v')!r} not understood; "
            f"this {who} speaks v{PROTOCOL_VERSION}",
        )


def encode(message: Mapping[str, Any]) -> bytes:
    """One message, framed, with the protocol version."""
    return (json.dumps({"v": PROTOCOL_VERSION, **message}, separators=(",", ":")) + "\n").encode()


def error(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """The error envelope (`encode` adds the version)."""
    return {"ok": False, "error": str(code), "message": message, **extra}


def required(body: Mapping[str, Any], key: str, where: str = "") -> str:
    """A required non-empty string field."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: required, a non-empty string",
        )
    return value


def optional(
    body: Mapping[str, Any],
    key: str,
    kind: type,
    expected: str,
    default: Any = None,
    where: str = "",
) -> Any:
    """An optional field of type `kind` (a bool is not an int), else `default`."""
    if key not in body:
        return default
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: expected {expected}, got {type(value).__name__}",
        )
    return value


def seconds(
    body: Mapping[str, Any], key: str, default: float, where: str = "", *, maximum: float
) -> float:
    """An optional number of seconds from 0 to `maximum` (NaN and huge numbers refused)."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not _within(value, maximum):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: expected a number of seconds from 0 "
            f"to {maximum:g}",
        )
    return float(value)


def _within(value: float, maximum: float) -> bool:
    """`0 <= value <= maximum` for an int of any size or a float (False for NaN)."""
    try:
        return 0 <= float(value) <= maximum
    except OverflowError:  # an integer with hundreds of digits
        return False


def _refuse_constant(name: str) -> Any:
    """NaN, Infinity and -Infinity are not JSON; Python's parser takes them unless told."""
    raise ValueError(f"{name} is not a JSON number")
