"""What the helper answers with: operations in their JSON form, and the status answer.

Owns the JSON form of an `Operation` (what `journal.json` and
`operations/<id>.json` hold, what `status` answers with, and what the agent
rebuilds history and trace spans from: `phases[]`: name, startedAt,
finishedAt, ok, message; `checks[]`: name, kind, ok, message, attempts,
startedAt, finishedAt), the names of the helper's journal files (the agent
watches them), and `HelperStatus`, the typed `status` answer. The helper
writes these with the `*_to_json`/`*_to_wire` functions and the agent reads
them with the `*_from_*` ones, so both sides agree by construction. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.common.operation import (
    CheckResult,
    Operation,
    Phase,
    Previous,
    State,
    Touched,
    Transition,
)
from reconciler.common.protocol import apply_from_wire, apply_to_wire

#: Under the helper's state dir: the operation in progress, the finished ones, their logs.
JOURNAL_FILE = "journal.json"
OPERATIONS_DIR = "operations"
LOGS_DIR = "ops"
#: Finished operations read from their JSON form, by (id, state, finishedAt, message).
_KEEP = 64
_finished: dict[tuple[Any, Any, Any, Any], Operation] = {}


def operation_to_json(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "state": str(op.state),
        "request": apply_to_wire(op.request),
        "storePath": op.request.store_path,
        "revision": op.request.revision,
        "traceparent": op.request.traceparent,
        "previous": {
            "currentSystem": op.previous.current_system,
            "profilePath": op.previous.profile_path,
            "profileGeneration": op.previous.profile_generation,
        },
        "touched": {
            "running": op.touched.running,
            "boot": op.touched.boot,
            "profile": op.touched.profile,
        },
        "done": list(op.done),
        "checks": [
            {
                "name": c.name,
                "kind": c.kind,
                "ok": c.ok,
                "message": c.message,
                "attempts": c.attempts,
                "startedAt": c.started_at,
                "finishedAt": c.finished_at,
            }
            for c in op.checks
        ],
        "confirmedAt": op.confirmed_at,
        "confirmDeadline": op.confirm_deadline,
        "generation": op.generation,
        "transitions": [
            {"state": str(t.state), "at": t.at, "message": t.message} for t in op.transitions
        ],
        "phases": [
            {
                "name": p.name,
                "startedAt": p.started_at,
                "finishedAt": p.finished_at,
                "ok": p.ok,
                "message": p.message,
            }
            for p in op.phases
        ],
        "message": op.message,
        "createdAt": op.created_at,
        "finishedAt": op.finished_at,
        "log": f"{LOGS_DIR}/{op.id}.log",
    }


def operation_from_json(d: Mapping[str, Any]) -> Operation:
    """An operation from its JSON form (KeyError, TypeError, ValueError or ProtocolError if
    it is not one). A finished operation never changes once archived, so the last `_KEEP`
    read are kept: the status answers the same ten finished ones again and again. Between
    its last state and the archive, retention adds to its message, so that is in the key."""
    if not isinstance(d, Mapping):  # a file or an answer holding `[]`, a number, a string
        raise TypeError(f"an operation is a JSON object, not {type(d).__name__}")
    key = (d.get("id"), d.get("state"), d.get("finishedAt"), d.get("message"))
    known = _finished.get(key)
    if known is not None:
        return known
    op = _operation_from_json(d)
    if op.terminal:
        if len(_finished) >= _KEEP:
            _finished.clear()
        _finished[key] = op
    return op


def _operation_from_json(d: Mapping[str, Any]) -> Operation:
    prev, touched = d["previous"], d["touched"]
    return Operation(
        id=d["id"],
        kind=d["kind"],
        request=apply_from_wire(d["request"]),
        state=_state(d["state"]),
        created_at=d["createdAt"],
        previous=Previous(prev["currentSystem"], prev["profilePath"], prev["profileGeneration"]),
        touched=Touched(bool(touched["running"]), bool(touched["boot"]), bool(touched["profile"])),
        done=tuple(d["done"]),
        checks=tuple(
            CheckResult(
                c["name"],
                c["kind"],
                c["ok"],
                c["message"],
                c["attempts"],
                c["startedAt"],
                c["finishedAt"],
            )
            for c in d["checks"]
        ),
        confirmed_at=d["confirmedAt"],
        confirm_deadline=d["confirmDeadline"],
        generation=d["generation"],
        transitions=tuple(
            Transition(_state(t["state"]), t["at"], t["message"]) for t in d["transitions"]
        ),
        phases=tuple(
            Phase(p["name"], p["startedAt"], p["finishedAt"], p["ok"], p["message"])
            for p in d["phases"]
        ),
        message=d["message"],
        finished_at=d["finishedAt"],
    )


def _state(value: Any) -> State:
    """A state's name to the State; ValueError naming the type of anything else (the enum's
    own message would repr a value of any size or depth)."""
    if not isinstance(value, str):
        raise ValueError(f"a state is a string, not {type(value).__name__}")
    return State(value)


@dataclass(frozen=True)
class HelperStatus:
    """The helper's `status` answer: the operation in progress, the finished ones (newest
    first), a queued self-upgrade, and the operation asked for by id."""

    operation: Operation | None = None
    recent: tuple[Operation, ...] = ()
    upgrade_pending: str | None = None
    found: Operation | None = None
    #: Why the helper refused the agent.toml it last found changed (it runs on the old one).
    config_error: str | None = None

    @property
    def busy(self) -> bool:
        return self.operation is not None

    @property
    def last(self) -> Operation | None:
        """The newest finished operation."""
        return self.recent[0] if self.recent else None


def status_to_wire(status: HelperStatus) -> dict[str, Any]:
    """The status answer's fields (`wire.encode` frames them)."""
    answer: dict[str, Any] = {
        "ok": True,
        "busy": status.busy,
        "operation": None if status.operation is None else operation_to_json(status.operation),
        "recent": [operation_to_json(op) for op in status.recent],
        "upgradePending": status.upgrade_pending,
    }
    if status.found is not None:
        answer["found"] = operation_to_json(status.found)
    return answer


def status_from_wire(answer: Mapping[str, Any]) -> HelperStatus:
    """Read a status answer back (KeyError, TypeError, ValueError or ProtocolError if it is
    not one)."""
    if not isinstance(answer, Mapping):
        raise TypeError(f"a status answer is a JSON object, not {type(answer).__name__}")
    current, found, config = answer.get("operation"), answer.get("found"), answer.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"a status answer's config is an object, not {type(config).__name__}")
    return HelperStatus(
        operation=None if current is None else operation_from_json(current),
        recent=tuple(operation_from_json(op) for op in answer.get("recent") or ()),
        upgrade_pending=answer.get("upgradePending"),
        found=None if found is None else operation_from_json(found),
        config_error=(config or {}).get("error"),
    )
