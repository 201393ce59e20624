"""Health checks as the helper runs them: one value type, its wire form and its parser.

Owns `CheckSpec`, the one shape of a health check between the agent (which
turns the spec's `healthChecks` into these) and the helper (which runs them):
`{"name": str, "timeout": number=10, "retries": int=0, "interval": number=1}`
plus exactly one of `"gitRemote": {}`, `"http": {"url", "expectStatus"=200,
"bodyRegex"?}`, `"tcp": {"host", "port"}`, `"systemd": {"units": [str, ...]}`,
`"command": {"argv": [str, ...]}`, durations in seconds. `check_to_wire` and
`parse_check` are each other's inverse. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.common.wire import ErrorCode, ProtocolError, optional, required, seconds

CHECK_KINDS = ("gitRemote", "http", "tcp", "systemd", "command")
#: The most a check may ask for (seconds, attempts): the spec's ranges lie within these.
MAX_CHECK_TIMEOUT = 3600.0
MAX_CHECK_INTERVAL = 3600.0
MAX_CHECK_RETRIES = 100
#: The fields of each kind's own object.
KIND_FIELDS: Mapping[str, frozenset[str]] = {
    "gitRemote": frozenset(),
    "http": frozenset({"url", "expectStatus", "bodyRegex"}),
    "tcp": frozenset({"host", "port"}),
    "systemd": frozenset({"units"}),
    "command": frozenset({"argv"}),
}


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


def check_spec(
    name: str,
    kind: str,
    target: Mapping[str, Any],
    *,
    timeout: float = 10.0,
    retries: int = 0,
    interval: float = 1.0,
) -> CheckSpec:
    """A CheckSpec from the kind's own fields (lists become tuples). Not checked here: the
    helper checks what it receives with `parse_check` and says what it refuses."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in target.items()}
    return CheckSpec(name, kind, tuple(sorted(fields.items())), timeout, retries, interval)


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
    name = required(raw, "name", where)
    retries = optional(raw, "retries", int, "an integer", 0, where)
    if not 0 <= retries <= MAX_CHECK_RETRIES:
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"{where}.retries: must be from 0 to {MAX_CHECK_RETRIES}"
        )
    target = raw[kind]
    if not isinstance(target, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.{kind}: must be an object")
    return CheckSpec(
        name=name,
        kind=kind,
        target=_check_target(kind, target, f"{where}.{kind}"),
        timeout=seconds(raw, "timeout", 10.0, where, maximum=MAX_CHECK_TIMEOUT),
        retries=retries,
        interval=seconds(raw, "interval", 1.0, where, maximum=MAX_CHECK_INTERVAL),
    )


def check_to_wire(spec: CheckSpec) -> dict[str, Any]:
    target = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.target}
    return {
        "name": spec.name,
        "timeout": spec.timeout,
        "retries": spec.retries,
        "interval": spec.interval,
        spec.kind: target,
    }


def _check_target(kind: str, t: Mapping[str, Any], where: str) -> tuple[tuple[str, Any], ...]:
    unknown = sorted(set(t) - KIND_FIELDS[kind])
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_FIELD, f"{where}: unknown field(s) {', '.join(unknown)}"
        )
    readers = {
        "http": _http,
        "tcp": _tcp,
        "systemd": _strings("units"),
        "command": _strings("argv"),
    }
    reader = readers.get(kind)
    out = {} if reader is None else reader(t, where)
    return tuple(sorted(out.items()))


def _http(t: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = required(t, "url", where)
    if not url.startswith(("http://", "https://")):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.url: must be http(s)://")
    out = {"url": url, "expectStatus": optional(t, "expectStatus", int, "an integer", 200, where)}
    if "bodyRegex" in t:
        pattern = required(t, "bodyRegex", where)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.bodyRegex: {exc}") from None
        except (RecursionError, OverflowError):  # `((((…` a thousand deep, `a{99999999999}`
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{where}.bodyRegex: nested too deeply or repeats too often"
            ) from None
        out["bodyRegex"] = pattern
    return out


def _tcp(t: Mapping[str, Any], where: str) -> dict[str, Any]:
    port = optional(t, "port", int, "an integer", None, where)
    if port is None or not 0 < port < 65536:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.port: needs a port 1-65535")
    return {"host": required(t, "host", where), "port": port}


def _strings(key: str) -> Any:
    def read(t: Mapping[str, Any], where: str) -> dict[str, Any]:
        items = t.get(key)
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(x, str) and x for x in items)
        ):
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"{where}.{key}: needs a non-empty list of strings"
            )
        return {key: tuple(items)}

    return read
