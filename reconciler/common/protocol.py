"""The helper's wire protocol: requests, answers and health-check specs as values.

Owns the one definition of what travels over the helper's Unix socket, so the
agent (through `client.py`) and the helper agree by construction. Pure: it
parses and checks plain data, it never touches the socket or the filesystem
(whether a store path exists is `store.py`'s business).

Framing: one JSON object per line (UTF-8, `\\n`-terminated), at most
`MAX_MESSAGE` bytes. Every request and every answer carries `"v": 1`.

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

Health checks, the spec's `healthChecks` entries with durations already in
seconds: `{"name": str, "timeout": number=10, "retries": int=0,
"interval": number=1}` plus exactly one of
`"gitRemote": {}`, `"http": {"url", "expectStatus"=200, "bodyRegex"?}`,
`"tcp": {"host", "port"}`, `"systemd": {"units": [str, ...]}`,
`"command": {"argv": [str, ...]}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1
#: Optional request fields this helper takes, beyond protocol 1 as first released; `ping`
#: lists them, so an agent sends them only to a helper that will not refuse them.
FEATURES = ("sourceRevision", "reboot")
MAX_MESSAGE = 64 * 1024
STORE_DIR = "/nix/store"
ACTIONS = ("switch", "boot", "test")
CHECK_KINDS = ("gitRemote", "http", "tcp", "systemd", "command")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_STORE_NAME = re.compile(r"^[0-9a-z]{32}-[A-Za-z0-9+\-._?=]+$")


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


class ProtocolError(Exception):
    """A request the helper refuses; `code` goes on the wire, the message says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Busy(ProtocolError):
    """An operation is in progress; the answer carries it (`journal.to_json` form)."""

    def __init__(self, operation: dict[str, Any]) -> None:
        super().__init__(
            ErrorCode.BUSY, f"operation {operation['id']} is in progress ({operation['state']})"
        )
        self.operation = operation


@dataclass(frozen=True)
class CheckSpec:
    """One health check. `target` holds the kind's own fields exactly as on the wire."""

    name: str
    kind: str
    target: tuple[tuple[str, Any], ...]
    timeout: float = 10.0
    retries: int = 0
    interval: float = 1.0

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.target).get(key, default)


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


def decode_line(line: bytes) -> dict[str, Any]:
    """One framed message to a JSON object, or ProtocolError."""
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message over {MAX_MESSAGE} bytes")
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "a message must be a JSON object")
    return value


def encode(message: Mapping[str, Any]) -> bytes:
    return (json.dumps({"v": PROTOCOL_VERSION, **message}, separators=(",", ":")) + "\n").encode()


def error(code: ErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": str(code), "message": message, **extra}


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
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.BAD_VERSION,
            f"protocol version {message.get('v')!r} not understood; "
            f"this helper speaks v{PROTOCOL_VERSION}",
        )
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
        revision = _opt(body, "revision", str, "a string")
        operation_id = _opt(body, "operationId", str, "a string")
        if not revision and not operation_id:
            raise ProtocolError(ErrorCode.BAD_FIELD, "confirm: give revision or operationId")
        return ConfirmRequest(revision=revision or None, operation_id=operation_id or None)
    if op == "rollback":
        return RollbackRequest(traceparent=_traceparent(body))
    if op == "upgrade":
        return UpgradeRequest(store_path=check_store_path_syntax(_req(body, "storePath")))
    if op == "reboot":
        return RebootRequest(
            store_path=check_store_path_syntax(_req(body, "storePath")),
            revision=_opt(body, "revision", str, "a string", ""),
            traceparent=_traceparent(body),
        )
    if op == "status":
        return StatusRequest(operation_id=_opt(body, "operationId", str, "a string") or None)
    return PingRequest()


def parse_apply(body: Mapping[str, Any]) -> ApplyRequest:
    action = _opt(body, "action", str, "a string", "switch")
    if action not in ACTIONS:
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"apply: action {action!r} is not one of {', '.join(ACTIONS)}"
        )
    checks = _opt(body, "healthChecks", list, "a list", [])
    return ApplyRequest(
        store_path=check_store_path_syntax(_req(body, "storePath")),
        revision=_opt(body, "revision", str, "a string", ""),
        action=action,
        trial=_opt(body, "trial", bool, "true or false", True),
        health_checks=tuple(parse_check(c, i) for i, c in enumerate(checks)),
        confirm_timeout=_seconds(body, "confirmTimeout", 120.0),
        require_confirm=_opt(body, "requireConfirm", bool, "true or false", False),
        traceparent=_traceparent(body),
        activation_timeout=_seconds(body, "activationTimeout", 900.0),
        source_revision=_opt(body, "sourceRevision", str, "a string", ""),
    )


def parse_check(raw: Any, index: int) -> CheckSpec:
    where = f"healthChecks[{index}]"
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}: must be an object")
    kinds = [k for k in CHECK_KINDS if k in raw]
    unknown = sorted(set(raw) - {"name", "timeout", "retries", "interval", *CHECK_KINDS})
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_FIELD, f"{where}: unknown field(s) {', '.join(unknown)}"
        )
    if len(kinds) != 1:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where}: needs exactly one of {', '.join(CHECK_KINDS)}, got {len(kinds)}",
        )
    kind = kinds[0]
    name = _req(raw, "name", where)
    retries = _opt(raw, "retries", int, "an integer", 0, where)
    if retries < 0:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.retries: must be >= 0")
    target = raw[kind]
    if not isinstance(target, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.{kind}: must be an object")
    return CheckSpec(
        name=name,
        kind=kind,
        target=_check_target(kind, target, f"{where}.{kind}"),
        timeout=_seconds(raw, "timeout", 10.0, where),
        retries=retries,
        interval=_seconds(raw, "interval", 1.0, where),
    )


def _check_target(kind: str, t: Mapping[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    allowed = {
        "gitRemote": set(),
        "http": {"url", "expectStatus", "bodyRegex"},
        "tcp": {"host", "port"},
        "systemd": {"units"},
        "command": {"argv"},
    }[kind]
    unknown = sorted(set(t) - allowed)
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_FIELD, f"{where}: unknown field(s) {', '.join(unknown)}"
        )
    out: dict[str, Any] = {}
    if kind == "http":
        url = _req(t, "url", where)
        if not url.startswith(("http://", "https://")):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.url: must be http(s)://")
        out = {"url": url, "expectStatus": _opt(t, "expectStatus", int, "an integer", 200, where)}
        if "bodyRegex" in t:
            pattern = _req(t, "bodyRegex", where)
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.bodyRegex: {exc}") from None
            out["bodyRegex"] = pattern
    elif kind == "tcp":
        port = _opt(t, "port", int, "an integer", None, where)
        if port is None or not 0 < port < 65536:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.port: needs a port 1-65535")
        out = {"host": _req(t, "host", where), "port": port}
    elif kind in ("systemd", "command"):
        key = "units" if kind == "systemd" else "argv"
        items = t.get(key)
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(x, str) and x for x in items)
        ):
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{where}.{key}: needs a non-empty list of strings"
            )
        out = {key: tuple(items)}
    return tuple(sorted(out.items()))


def check_to_wire(spec: CheckSpec) -> dict[str, Any]:
    target = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.target}
    return {
        "name": spec.name,
        "timeout": spec.timeout,
        "retries": spec.retries,
        "interval": spec.interval,
        spec.kind: target,
    }


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


def _req(body: Mapping[str, Any], key: str, where: str = "") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: required, a non-empty string",
        )
    return value


def _opt(
    body: Mapping[str, Any],
    key: str,
    kind: type,
    expected: str,
    default: Any = None,
    where: str = "",
) -> Any:
    if key not in body:
        return default
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: expected {expected}, got {type(value).__name__}",
        )
    return value


def _seconds(body: Mapping[str, Any], key: str, default: float, where: str = "") -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"{where + '.' if where else ''}{key}: expected a non-negative number of seconds",
        )
    return float(value)


def _traceparent(body: Mapping[str, Any]) -> str:
    value = _opt(body, "traceparent", str, "a string", "")
    if value and not _TRACEPARENT.match(value):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, "traceparent: expected W3C form 00-<32 hex>-<16 hex>-<2 hex>"
        )
    return str(value)
