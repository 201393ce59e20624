"""The helper's wire protocol: requests, answers and health-check specs as values.

Owns the one definition of what travels over the helper's Unix socket, so the
agent (through `client.py`) and the helper agree by construction: every
request is a value, `request_to_wire` writes it and `parse_request` reads it
back, on both sides. Pure: it parses and checks plain data, it never touches
the socket or the filesystem (whether a store path exists is the helper's
`system.py`'s business). The framing, the version and the error envelope are
`wire.py`'s, shared with the agent's local API; the answers' values
(operations, the status) are `answers.py`'s; health checks are `checks.py`'s.

Requests (`"op"` names the request; any other key is an error):

- `{"v":1, "op":"ping"}` -> `{"v":1, "ok":true, "version", "protocol", "pid", "uptime",
  "startedAt", "program", "ready", "features"}` (answered as soon as the socket listens; other
  requests wait until `ready`, a few milliseconds, or fail with `starting`)
- `{"v":1, "op":"status", "operationId"?}` -> `{"v":1, "ok":true, "busy",
  "operation": <op or null>, "recent": [<op>, ...newest first],
  "upgradePending": <path or null>, "found": <that op, when operationId was given>,
  "config": {"path", "loadedAt", "error": <why a changed agent.toml was refused, or
  null>, "errorAt", "waitingForRestart": [key, ...]}}` (an op is `journal.to_json`'s
  form; `config` is absent from helpers older than config reload)
- `{"v":1, "op":"apply", "storePath", "revision", "action", "trial", "healthChecks",
  "confirmTimeout", "requireConfirm", "traceparent", "activationTimeout"?}`
  -> `{"v":1, "ok":true, "operationId", "state":"Pending"}`; only `storePath` is
  required; `action` is `switch|boot|test` (default `switch`), `trial` defaults to
  true, `confirmTimeout` (seconds) to 120, `requireConfirm` to false,
  `activationTimeout` (seconds) to 900. `sourceRevision`? (optional; a helper
  older than this field refuses it as unknown, so send it only when set) is
  the branch tip whose desired state asked for `revision` (they differ under a
  `spec.revision` pin); it is journaled with the request, for the record of
  committed generations (`records.py`) that downgrade protection reads.
- `{"v":1, "op":"confirm", "revision"? , "operationId"?}` (at least one) ->
  `{"v":1, "ok":true, "operationId", "state"}`
- `{"v":1, "op":"rollback", "traceparent"?}` -> like apply: switch to the previous
  generation of the system profile.
- `{"v":1, "op":"upgrade", "storePath"}` -> `{"v":1, "ok":true, "queued": bool}`
- `{"v":1, "op":"reboot", "storePath", "revision"?, "traceparent"?}` -> `{"v":1, "ok":true,
  "operationId"}`: reboot the machine (`systemctl reboot`, honouring logind's shutdown
  inhibitors) expecting `storePath` to come up; `busy` while an operation runs or an
  inhibitor holds. After the boot the helper archives it as an operation of kind
  `reboot`: Succeeded when /run/booted-system is `storePath`, else Failed. (Feature
  `reboot`.)

A failure is `{"v":1, "ok":false, "error": <code>, "message": <human text>, ...}`
with the codes in `ErrorCode`; `busy` also carries `"operation"`.

Health checks are `checks.py`'s `CheckSpec`, in its wire form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reconciler.common.checks import CHECK_KINDS, CheckSpec, check_to_wire, parse_check
from reconciler.common.wire import (
    MAX_MESSAGE,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    check_version,
    decode_line,
    encode,
    error,
    optional,
    required,
    seconds,
)

# The helper's modules and the tests reach the framing through this module too.
__all__ = [
    "ACTIONS",
    "CHECK_KINDS",
    "FEATURES",
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "ApplyRequest",
    "Busy",
    "CheckSpec",
    "ConfirmRequest",
    "ErrorCode",
    "PingRequest",
    "ProtocolError",
    "RebootRequest",
    "Request",
    "RollbackRequest",
    "StatusRequest",
    "UpgradeRequest",
    "apply_from_wire",
    "apply_to_wire",
    "check_store_path_syntax",
    "decode_line",
    "encode",
    "error",
    "new_traceparent",
    "parse_apply",
    "parse_request",
    "request_to_wire",
]

#: Optional request fields this helper takes, beyond protocol 1 as first released; `ping`
#: lists them, so an agent sends them only to a helper that will not refuse them.
FEATURES = ("sourceRevision", "reboot")
STORE_DIR = "/nix/store"
#: The ways to activate a system (`switch-to-configuration`'s, less dry-activate).
ACTIONS = ("switch", "boot", "test")
#: The longest a request's confirmation or activation may take, in seconds: the helper
#: never waits longer than a request can ask (the spec's own ranges, in crds/, lie within).
MAX_CONFIRM_TIMEOUT = 86400.0
MAX_ACTIVATION_TIMEOUT = 86400.0
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_STORE_NAME = re.compile(r"^[0-9a-z]{32}-[A-Za-z0-9+\-._?=]+$")


class Busy(ProtocolError):
    """An operation is in progress; the answer carries it (`answers.operation_to_json`)."""

    def __init__(self, operation: dict[str, Any]) -> None:
        super().__init__(
            ErrorCode.BUSY, f"operation {operation['id']} is in progress ({operation['state']})"
        )
        self.operation = operation


@dataclass(frozen=True)
class ApplyRequest:
    store_path: str
    revision: str = ""
    action: str = "switch"
    trial: bool = True
    health_checks: tuple[CheckSpec, ...] = ()
    confirm_timeout: float = 120.0
    require_confirm: bool = False
    traceparent: str = ""
    activation_timeout: float = 900.0
    source_revision: str = ""  # the branch tip that carried `revision` (a pin's carrier)
    generation: int | None = None  # set by `rollback`: move the profile to this generation


@dataclass(frozen=True)
class ConfirmRequest:
    revision: str | None = None
    operation_id: str | None = None


@dataclass(frozen=True)
class RollbackRequest:
    traceparent: str = ""


@dataclass(frozen=True)
class UpgradeRequest:
    store_path: str


@dataclass(frozen=True)
class RebootRequest:
    store_path: str
    revision: str = ""
    traceparent: str = ""


@dataclass(frozen=True)
class StatusRequest:
    operation_id: str | None = None


@dataclass(frozen=True)
class PingRequest:
    pass


Request = (
    ApplyRequest
    | ConfirmRequest
    | RollbackRequest
    | UpgradeRequest
    | RebootRequest
    | StatusRequest
    | PingRequest
)


_FIELDS: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "status": frozenset({"operationId"}),
    "reboot": frozenset({"storePath", "revision", "traceparent"}),
    "apply": frozenset(
        {
            "storePath",
            "revision",
            "action",
            "trial",
            "healthChecks",
            "confirmTimeout",
            "requireConfirm",
            "traceparent",
            "activationTimeout",
            "sourceRevision",
        }
    ),
    "confirm": frozenset({"revision", "operationId"}),
    "rollback": frozenset({"traceparent"}),
    "upgrade": frozenset({"storePath"}),
}


def parse_request(message: Mapping[str, Any]) -> Request:
    """Check a decoded message against the protocol; the value, or ProtocolError."""
    check_version(message, "helper")
    op = message.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise ProtocolError(
            ErrorCode.UNKNOWN_OP, f"unknown op {op!r} (known: {', '.join(sorted(_FIELDS))})"
        )
    body = {k: v for k, v in message.items() if k not in ("v", "op")}
    unknown = sorted(set(body) - _FIELDS[op])
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_FIELD,
            f"{op}: unknown field(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_FIELDS[op])) or 'none'})",
        )
    if op == "apply":
        return parse_apply(body)
    if op == "confirm":
        revision = optional(body, "revision", str, "a string")
        operation_id = optional(body, "operationId", str, "a string")
        if not revision and not operation_id:
            raise ProtocolError(ErrorCode.BAD_FIELD, "confirm: give revision or operationId")
        return ConfirmRequest(revision=revision or None, operation_id=operation_id or None)
    if op == "rollback":
        return RollbackRequest(traceparent=_traceparent(body))
    if op == "upgrade":
        return UpgradeRequest(store_path=check_store_path_syntax(required(body, "storePath")))
    if op == "reboot":
        return RebootRequest(
            store_path=check_store_path_syntax(required(body, "storePath")),
            revision=optional(body, "revision", str, "a string", ""),
            traceparent=_traceparent(body),
        )
    if op == "status":
        return StatusRequest(operation_id=optional(body, "operationId", str, "a string") or None)
    return PingRequest()


def parse_apply(body: Mapping[str, Any]) -> ApplyRequest:
    action = optional(body, "action", str, "a string", "switch")
    if action not in ACTIONS:
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"apply: action {action!r} is not one of {', '.join(ACTIONS)}"
        )
    checks = optional(body, "healthChecks", list, "a list", [])
    return ApplyRequest(
        store_path=check_store_path_syntax(required(body, "storePath")),
        revision=optional(body, "revision", str, "a string", ""),
        action=action,
        trial=optional(body, "trial", bool, "true or false", True),
        health_checks=tuple(parse_check(c, i) for i, c in enumerate(checks)),
        confirm_timeout=seconds(body, "confirmTimeout", 120.0, maximum=MAX_CONFIRM_TIMEOUT),
        require_confirm=optional(body, "requireConfirm", bool, "true or false", False),
        traceparent=_traceparent(body),
        activation_timeout=seconds(
            body, "activationTimeout", 900.0, maximum=MAX_ACTIVATION_TIMEOUT
        ),
        source_revision=optional(body, "sourceRevision", str, "a string", ""),
    )


def apply_to_wire(req: ApplyRequest) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "storePath": req.store_path,
        "revision": req.revision,
        "action": req.action,
        "trial": req.trial,
        "healthChecks": [check_to_wire(c) for c in req.health_checks],
        "confirmTimeout": req.confirm_timeout,
        "requireConfirm": req.require_confirm,
        "traceparent": req.traceparent,
        "activationTimeout": req.activation_timeout,
    }
    if req.source_revision:  # only when set: a journal without it reads as before
        wire["sourceRevision"] = req.source_revision
    if req.generation is not None:
        wire["generation"] = req.generation
    return wire


def apply_from_wire(wire: Mapping[str, Any]) -> ApplyRequest:
    """Read back a journaled request (written by `apply_to_wire`)."""
    body = dict(wire)
    generation = body.pop("generation", None)
    return replace(parse_apply(body), generation=generation)


def request_to_wire(request: Request) -> dict[str, Any]:
    """A request as sent (before framing): `parse_request` reads it back to the same value.
    Optional fields are left out when unset, so a helper that predates them still takes it."""
    match request:
        case ApplyRequest():
            body = apply_to_wire(request)
            body.pop("generation", None)  # journaled only: a rollback's target, not requested
            return {"op": "apply", **body}
        case ConfirmRequest(revision=revision, operation_id=operation_id):
            fields = (("revision", revision), ("operationId", operation_id))
            return {"op": "confirm", **{k: v for k, v in fields if v is not None}}
        case RollbackRequest(traceparent=traceparent):
            return {"op": "rollback", **({"traceparent": traceparent} if traceparent else {})}
        case UpgradeRequest(store_path=store_path):
            return {"op": "upgrade", "storePath": store_path}
        case RebootRequest(store_path=store_path, revision=revision, traceparent=traceparent):
            reboot = {"op": "reboot", "storePath": store_path, "revision": revision}
            return {**reboot, **({"traceparent": traceparent} if traceparent else {})}
        case StatusRequest(operation_id=operation_id):
            return {"op": "status", **({"operationId": operation_id} if operation_id else {})}
        case PingRequest():
            return {"op": "ping"}


def check_store_path_syntax(path: str) -> str:
    """A toplevel must be `/nix/store/<hash>-<name>`: no `..`, nothing below it."""
    if not path.startswith(STORE_DIR + "/"):
        raise ProtocolError(ErrorCode.BAD_STORE_PATH, f"{path!r} is not under {STORE_DIR}")
    rest = path[len(STORE_DIR) + 1 :].rstrip("/")
    if ".." in rest.split("/") or "." in rest.split("/"):
        raise ProtocolError(ErrorCode.BAD_STORE_PATH, f"{path!r} contains '..' or '.'")
    if "/" in rest or not _STORE_NAME.match(rest):
        raise ProtocolError(
            ErrorCode.BAD_STORE_PATH, f"{path!r} is not a store path ({STORE_DIR}/<hash>-<name>)"
        )
    return f"{STORE_DIR}/{rest}"


def new_traceparent() -> str:
    """A fresh W3C traceparent (sampled), for an operation no pass's trace started.

    `os.urandom`, as `secrets` uses, without importing `secrets`: that pulls in
    hashlib and OpenSSL, about 4 MB of the helper's resident memory, which imports
    this module too."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def _traceparent(body: Mapping[str, Any]) -> str:
    value = optional(body, "traceparent", str, "a string", "")
    if value and not _TRACEPARENT.match(value):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, "traceparent: expected W3C form 00-<32 hex>-<16 hex>-<2 hex>"
        )
    return str(value)
