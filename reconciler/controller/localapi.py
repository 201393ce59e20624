"""The agent's local API: a Unix socket the CLI talks to while an agent runs.

Owns the socket at `[agent] socket` (parent created, mode 0660, a stale
socket replaced, a live one refused: another agent answers there), the peer
check (SO_PEERCRED: root, the agent's own uid and `[helper] agent_uids`; anyone
else gets `forbidden` and is logged) and the checking of requests before they
reach the `Control`. The framing, the version and the error envelope are the
helper's (`reconciler.common.wire`): one JSON object per line, at most
`MAX_MESSAGE` bytes, `"v": 1` both ways. The requests:

- `{"v":1,"op":"ping"}` -> `{"ok":true,"pid"}`
- `{"v":1,"op":"status"}` -> `{"ok":true,"status":<status.json>,"agent":{...}}`
- `{"v":1,"op":"reconcile","wait":bool,"timeout"?:seconds}` -> queued, or with
  wait the pass's (and the helper's) verdict: `{"ok":true,"exitCode","phase",
  "reason","message","pass":{...}}`
- `{"v":1,"op":"suspend"|"resume"|"retry"}` -> `{"ok":true,"message"}`
- `{"v":1,"op":"rollback","wait":bool,"timeout"?}` -> `{"ok":true,"operationId",...}`

A failure is `{"v":1,"ok":false,"error":<code>,"message"}`. Codes (`wire.ErrorCode`):
bad-json, too-large, bad-version, unknown-op, bad-field, forbidden, timeout,
stopping, refused (the helper or the agent said no, the message says why),
internal.

Must not: act by itself; every request goes to the `Control` it is given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any, Protocol

from reconciler.common.sockets import bind, peer_credentials
from reconciler.common.wire import (
    MAX_MESSAGE,
    ErrorCode,
    ProtocolError,
    check_version,
    decode_line,
    encode,
    error,
    seconds,
)

log = logging.getLogger("pullnix.api")

IDLE_TIMEOUT = 600.0
#: The longest `timeout` a request may ask for, in seconds (a day).
MAX_TIMEOUT = 86400.0
_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ping": {},
    "status": {},
    "reconcile": {"wait": bool, "timeout": (int, float)},
    "suspend": {},
    "resume": {},
    "retry": {},
    "rollback": {"wait": bool, "timeout": (int, float)},
}


class ApiError(ProtocolError):
    """A request the API refuses; `code` goes on the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(ErrorCode(code), message)


class Control(Protocol):
    """What the agent does for API requests (reconciler.controller.agent implements it)."""

    def status(self) -> dict[str, Any]: ...
    def reconcile(self, wait: bool, timeout: float) -> dict[str, Any]: ...
    def suspend(self) -> dict[str, Any]: ...
    def resume(self) -> dict[str, Any]: ...
    def retry(self) -> dict[str, Any]: ...
    def rollback(self, wait: bool, timeout: float) -> dict[str, Any]: ...


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """One request line to (op, fields); ProtocolError saying what is wrong."""
    message = decode_line(line)
    check_version(message, "agent")
    op = message.get("op")
    if op not in _FIELDS:
        raise ApiError("unknown-op", f"unknown op {op!r} (known: {', '.join(_FIELDS)})")
    fields = {k: v for k, v in message.items() if k not in ("v", "op")}
    for key, value in fields.items():
        kind = _FIELDS[op].get(key)
        if kind is None:
            raise ApiError("bad-field", f"{op}: unknown field {key!r}")
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ApiError("bad-field", f"{op}: {key} has the wrong type")
    if "timeout" in fields:  # NaN and Infinity never get here: decode_line refuses them
        seconds(fields, "timeout", 0.0, str(op), maximum=MAX_TIMEOUT)
    return str(op), fields


class LocalApi:
    def __init__(self, path: Path, allowed_uids: tuple[int, ...], control: Control) -> None:
        self.path = path
        self.allowed = frozenset({0, os.getuid(), *allowed_uids})
        self.control = control
        self._listener = bind(path, who="agent")
        self._thread = threading.Thread(target=self._serve, name="local-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("local API on %s", self.path)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed: shutting down
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, _gid = peer_credentials(conn)
            conn.settimeout(IDLE_TIMEOUT)
            with conn.makefile("rb") as reader:
                if uid not in self.allowed:
                    log.warning(
                        "refused a peer on the local API: pid %d uid %d is not root, "
                        "the agent's uid or in helper.agent_uids",
                        pid,
                        uid,
                    )
                    conn.settimeout(1.0)
                    with contextlib.suppress(OSError):
                        reader.readline(MAX_MESSAGE + 1)  # let its request land, then refuse
                    _send(
                        conn, error(ErrorCode.FORBIDDEN, f"uid {uid} may not use the agent's API")
                    )
                    return
                while True:
                    try:
                        line = reader.readline(MAX_MESSAGE + 1)
                    except OSError:
                        return
                    if not line:
                        return
                    if len(line) > MAX_MESSAGE:
                        _send(conn, error(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE} bytes"))
                        return
                    if not _send(conn, self.handle(line)):
                        return

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            op, fields = parse_request(line)
            answer = self._dispatch(op, fields)
        except ProtocolError as exc:
            return error(exc.code, exc.message)
        except Exception as exc:
            log.exception("API request failed")
            return error(ErrorCode.INTERNAL, f"internal error: {exc!r}")
        return {"ok": True, **answer}

    def _dispatch(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        c = self.control
        wait, timeout = bool(fields.get("wait")), float(fields.get("timeout", 1800.0))
        match op:
            case "ping":
                return {"pid": os.getpid()}
            case "status":
                return c.status()
            case "reconcile":
                return c.reconcile(wait, timeout)
            case "suspend":
                return c.suspend()
            case "resume":
                return c.resume()
            case "retry":
                return c.retry()
            case _:
                return c.rollback(wait, timeout)


def _send(conn: socket.socket, answer: dict[str, Any]) -> bool:
    try:
        conn.sendall(encode(answer))
        return True
    except OSError:
        return False
