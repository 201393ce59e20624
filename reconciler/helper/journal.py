"""The helper's journal: the operation in progress and the finished ones, on disk.

Owns the files under `[helper] state_dir` that make an operation survive a
crash: `journal.json` (the operation in progress, rewritten atomically before
each step is acted on; `{"v": 1, "operation": null}` when idle) and
`operations/<id>.json` (a finished operation, the newest `KEEP` kept, so the
agent can read an outcome after its own restart), both mode 0640: the agent,
in the state dir's group, watches and reads them but cannot write. Also the
JSON form of an operation, which is what `status` answers with and what the
agent rebuilds trace spans from (`phases[]`: name, startedAt, finishedAt, ok,
message; `checks[]`: name, kind, ok, message, attempts, startedAt, finishedAt).

Must not: decide anything (that is `machine.py`) or run anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.common.atomic import write_json_atomic
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

JOURNAL_FILE = "journal.json"
OPERATIONS_DIR = "operations"
LOGS_DIR = "ops"
KEEP = 50
FORMAT = 1
#: Readable by the state dir's group (the agent's, under the NixOS module); root writes.
FILE_MODE = 0o640


class JournalError(Exception):
    """The journal exists but cannot be read; the helper refuses to guess."""


def to_json(op: Operation) -> dict[str, Any]:
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


def from_json(d: dict[str, Any]) -> Operation:
    prev, touched = d["previous"], d["touched"]
    return Operation(
        id=d["id"],
        kind=d["kind"],
        request=apply_from_wire(d["request"]),
        state=State(d["state"]),
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
            Transition(State(t["state"]), t["at"], t["message"]) for t in d["transitions"]
        ),
        phases=tuple(
            Phase(p["name"], p["startedAt"], p["finishedAt"], p["ok"], p["message"])
            for p in d["phases"]
        ),
        message=d["message"],
        finished_at=d["finishedAt"],
    )


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / JOURNAL_FILE
        self.archive = state_dir / OPERATIONS_DIR

    def load(self) -> Operation | None:
        """The operation in progress, if any; JournalError if the file is unreadable."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise JournalError(f"{self.path}: cannot read the journal: {exc}") from None
        try:
            if doc.get("v") != FORMAT:
                raise JournalError(f"{self.path}: journal format {doc.get('v')!r} unknown")
            raw = doc["operation"]
            return None if raw is None else from_json(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise JournalError(f"{self.path}: malformed journal: {exc!r}") from None

    def write(self, op: Operation | None) -> None:
        write_json_atomic(
            self.path,
            {"v": FORMAT, "operation": None if op is None else to_json(op)},
            mode=FILE_MODE,
        )

    def finish(self, op: Operation, between: Callable[[], None] = lambda: None) -> None:
        """Archive a finished operation, then clear the journal (both idempotent)."""
        write_json_atomic(self.archive / f"{op.id}.json", to_json(op), mode=FILE_MODE)
        between()
        self.write(None)
        self._prune()

    def sweep(self) -> None:
        """Remove temp files a killed writer left behind (never the files themselves)."""
        for directory in (self.state_dir, self.archive):
            try:
                leftovers = [
                    p
                    for p in directory.iterdir()
                    if p.name.startswith(".") and p.name.endswith(".tmp")
                ]
            except FileNotFoundError:
                continue
            for path in leftovers:
                path.unlink(missing_ok=True)

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """Finished operations, newest first."""
        out: list[dict[str, Any]] = []
        for path in self._archived()[::-1][:limit]:
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out

    def find(self, op_id: str) -> dict[str, Any] | None:
        if "/" in op_id or op_id.startswith("."):
            return None
        try:
            value: dict[str, Any] = json.loads(
                (self.archive / f"{op_id}.json").read_text(encoding="utf-8")
            )
            return value
        except (OSError, ValueError):
            return None

    def log_path(self, op_id: str) -> Path:
        return self.state_dir / LOGS_DIR / f"{op_id}.log"

    def _archived(self) -> list[Path]:
        try:
            return sorted(
                p
                for p in self.archive.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    def _prune(self) -> None:
        for path in self._archived()[:-KEEP]:
            path.unlink(missing_ok=True)
            self.log_path(path.stem).unlink(missing_ok=True)
