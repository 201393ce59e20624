"""A small client for the helper's socket, for the agent (and tests).

Owns the client side of `protocol.py`: one connection per request, one line
out, one line in, and `wait()` polling `status` until an operation is over.
Standard library only, like the rest of the island.

Must not: retry operations on its own (an `apply` that may have been accepted
is never sent twice); only the caller knows whether that is safe.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from reconciler.common.protocol import MAX_MESSAGE, PROTOCOL_VERSION

TERMINAL_STATES = frozenset({"Succeeded", "RolledBack", "Failed"})


class HelperError(Exception):
    """The helper refused a request; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str, answer: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.answer = answer


class HelperUnavailable(Exception):
    """Nobody answers on the socket (not running, restarting, or re-executing)."""


def exchange_line(socket_path: str, data: bytes, timeout: float) -> bytes:
    """One connection to a Unix socket: send `data`, read one answer line (b"" if the peer
    hung up). OSError as it comes; the agent's local API client uses this too."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(socket_path)
        # Refused before it read everything? Its answer still waits below.
        with contextlib.suppress(BrokenPipeError):
            conn.sendall(data)
        with conn.makefile("rb") as reader:
            return reader.readline(MAX_MESSAGE * 16)


class HelperClient:
    def __init__(self, socket_path: Path | str, timeout: float = 30.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; the answer when ok, else HelperError."""
        answer = self.raw({"v": PROTOCOL_VERSION, "op": op, **fields})
        if not answer.get("ok"):
            raise HelperError(str(answer.get("error")), str(answer.get("message")), answer)
        return answer

    def raw(self, message: dict[str, Any] | bytes) -> dict[str, Any]:
        """Send a message as is (bytes are sent verbatim) and return the decoded answer."""
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        try:
            line = exchange_line(self.socket_path, data, self.timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise HelperUnavailable(f"{self.socket_path}: {exc.strerror}") from None
        except OSError as exc:
            raise HelperUnavailable(f"{self.socket_path}: {exc}") from None
        if not line:
            raise HelperUnavailable(f"{self.socket_path}: the helper hung up")
        value: dict[str, Any] = json.loads(line)
        return value

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def features(self) -> frozenset[str]:
        """What optional request fields the helper answering now takes (asked each time:
        the helper may have been upgraded, or rolled back, since the last request)."""
        return frozenset(self.ping().get("features") or ())

    def status(self, operation_id: str | None = None) -> dict[str, Any]:
        if operation_id is None:
            return self.request("status")
        return self.request("status", operationId=operation_id)

    def apply(
        self,
        store_path: str,
        *,
        revision: str = "",
        action: str = "switch",
        trial: bool = True,
        health_checks: list[dict[str, Any]] | None = None,
        confirm_timeout: float = 120.0,
        require_confirm: bool = False,
        traceparent: str = "",
        activation_timeout: float | None = None,
        source_revision: str = "",
    ) -> str:
        """Start an operation; its id. `source_revision` is sent only to a helper that
        says it takes it (an older helper refuses fields it does not know)."""
        fields: dict[str, Any] = {
            "storePath": store_path,
            "revision": revision,
            "action": action,
            "trial": trial,
            "healthChecks": health_checks or [],
            "confirmTimeout": confirm_timeout,
            "requireConfirm": require_confirm,
            "traceparent": traceparent,
        }
        if activation_timeout is not None:
            fields["activationTimeout"] = activation_timeout
        if source_revision and "sourceRevision" in self.features():
            fields["sourceRevision"] = source_revision
        return str(self.request("apply", **fields)["operationId"])

    def confirm(
        self, *, revision: str | None = None, operation_id: str | None = None
    ) -> dict[str, Any]:
        fields = {
            k: v
            for k, v in (("revision", revision), ("operationId", operation_id))
            if v is not None
        }
        return self.request("confirm", **fields)

    def rollback(self, traceparent: str = "") -> str:
        fields = {"traceparent": traceparent} if traceparent else {}
        return str(self.request("rollback", **fields)["operationId"])

    def reboot(self, store_path: str, revision: str = "", traceparent: str = "") -> str:
        """Ask for a reboot expecting `store_path` to come up; the reboot's operation id."""
        fields = {"storePath": store_path, "revision": revision}
        if traceparent:
            fields["traceparent"] = traceparent
        return str(self.request("reboot", **fields)["operationId"])

    def upgrade(self, store_path: str) -> dict[str, Any]:
        return self.request("upgrade", storePath=store_path)

    def wait(self, operation_id: str, timeout: float = 600.0, poll: float = 0.05) -> dict[str, Any]:
        """Poll until the operation is over (riding out helper restarts); its record."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.status(operation_id)
                found, current = answer["found"], answer["operation"]
                archived = current is None or current["id"] != operation_id
                if found["state"] in TERMINAL_STATES and archived:
                    return dict(found)
            except HelperUnavailable:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"operation {operation_id} not over after {timeout:g}s")
            time.sleep(poll)

    def wait_until_up(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping()
            except HelperUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
