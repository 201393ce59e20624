"""The client of the helper's socket, for the agent (and tests).

Owns the client side of `protocol.py`: one connection per request, one line
out, one line in, and `wait_for()` polling `status` until an operation is
over. Requests go out as `protocol` values written by `request_to_wire`, the
function whose output the helper's `parse_request` reads, and the status
comes back as a `HelperStatus` read by `answers.status_from_wire`, the
inverse of what the helper writes. The keyword methods (`apply`, `status`,
`wait`, ...) build the same values and return the answer's JSON, for scripts
and tests that look at the wire. Standard library only, like the rest of the
base.

Must not: retry operations on its own (an `apply` that may have been accepted
is never sent twice); only the caller knows whether that is safe.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.common.answers import (
    HelperStatus,
    operation_to_json,
    status_from_wire,
)
from reconciler.common.checks import parse_check
from reconciler.common.operation import TERMINAL, Operation
from reconciler.common.protocol import (
    ApplyRequest,
    ConfirmRequest,
    PingRequest,
    RebootRequest,
    Request,
    RollbackRequest,
    StatusRequest,
    UpgradeRequest,
    request_to_wire,
)
from reconciler.common.wire import MAX_MESSAGE, PROTOCOL_VERSION, ErrorCode, encode


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

    # -- typed: what the agent uses ------------------------------------------------------

    def send(self, request: Request) -> dict[str, Any]:
        """Send one request; the answer when ok, else HelperError."""
        answer = self.raw(encode(request_to_wire(request)))
        if not answer.get("ok"):
            raise HelperError(str(answer.get("error")), str(answer.get("message")), answer)
        return answer

    def submit(self, request: ApplyRequest) -> str:
        """Start an operation; its id. `source_revision` is sent only to a helper that says
        it takes it (an older helper refuses fields it does not know)."""
        if request.source_revision and "sourceRevision" not in self.features():
            request = replace(request, source_revision="")
        return str(self.send(request)["operationId"])

    def helper_status(self, operation_id: str | None = None) -> HelperStatus:
        """The helper's status; with `operation_id`, `found` is that operation."""
        return status_from_wire(self.send(StatusRequest(operation_id)))

    def wait_for(self, operation_id: str, timeout: float = 600.0, poll: float = 0.05) -> Operation:
        """Poll until the operation is over (riding out helper restarts); its record."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.helper_status(operation_id)
                found, current = status.found, status.operation
                archived = current is None or current.id != operation_id
                if found is not None and found.state in TERMINAL and archived:
                    return found
            except HelperUnavailable:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"operation {operation_id} not over after {timeout:g}s")
            time.sleep(poll)

    # -- the wire's JSON, for scripts and tests ----------------------------------------------

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request written by hand (malformed ones too); the answer when ok, else
        HelperError."""
        answer = self.raw({"v": PROTOCOL_VERSION, "op": op, **fields})
        if not answer.get("ok"):
            raise HelperError(str(answer.get("error")), str(answer.get("message")), answer)
        return answer

    def raw(self, message: Mapping[str, Any] | bytes) -> dict[str, Any]:
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
        if value.get("error") == ErrorCode.OVERLOADED:  # too many connections: try again later
            raise HelperUnavailable(f"{self.socket_path}: {value.get('message')}")
        return value

    def ping(self) -> dict[str, Any]:
        return self.send(PingRequest())

    def features(self) -> frozenset[str]:
        """What optional request fields the helper answering now takes (asked each time:
        the helper may have been upgraded, or rolled back, since the last request)."""
        return frozenset(self.ping().get("features") or ())

    def status(self, operation_id: str | None = None) -> dict[str, Any]:
        return self.send(StatusRequest(operation_id))

    def apply(
        self,
        store_path: str,
        *,
        revision: str = "",
        action: str = "switch",
        trial: bool = True,
        health_checks: Sequence[Mapping[str, Any]] = (),
        confirm_timeout: float = 120.0,
        require_confirm: bool = False,
        traceparent: str = "",
        activation_timeout: float = 900.0,
        source_revision: str = "",
    ) -> str:
        """`submit` with the request's fields as keywords, health checks in their wire form."""
        request = ApplyRequest(
            store_path=store_path,
            revision=revision,
            action=action,
            trial=trial,
            health_checks=tuple(parse_check(dict(c), i) for i, c in enumerate(health_checks)),
            confirm_timeout=confirm_timeout,
            require_confirm=require_confirm,
            traceparent=traceparent,
            activation_timeout=activation_timeout,
            source_revision=source_revision,
        )
        return self.submit(request)

    def confirm(
        self, *, revision: str | None = None, operation_id: str | None = None
    ) -> dict[str, Any]:
        return self.send(ConfirmRequest(revision=revision, operation_id=operation_id))

    def rollback(self, traceparent: str = "") -> str:
        return str(self.send(RollbackRequest(traceparent))["operationId"])

    def reboot(self, store_path: str, revision: str = "", traceparent: str = "") -> str:
        """Ask for a reboot expecting `store_path` to come up; the reboot's operation id."""
        return str(self.send(RebootRequest(store_path, revision, traceparent))["operationId"])

    def upgrade(self, store_path: str) -> dict[str, Any]:
        return self.send(UpgradeRequest(store_path))

    def wait(self, operation_id: str, timeout: float = 600.0, poll: float = 0.05) -> dict[str, Any]:
        """`wait_for`, the operation in its JSON form."""
        return operation_to_json(self.wait_for(operation_id, timeout, poll))

    def wait_until_up(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.ping()
            except HelperUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
