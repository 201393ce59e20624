"""The helper's journal: the operation in progress and the finished ones, on disk.

Owns the files under `[helper] state_dir` that make an operation survive a
crash: `journal.json` (the operation in progress, rewritten atomically before
each step is acted on; `{"v": 1, "operation": null}` when idle) and
`operations/<id>.json` (a finished operation, the newest `KEEP` kept, so the
agent can read an outcome after its own restart), both mode 0640: the agent,
in the state dir's group, watches and reads them but cannot write. The
files' names and the JSON form of an operation are the base's
(`reconciler.common.answers`): the agent reads them too.

Must not: decide anything (that is `machine.py`) or run anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.common.answers import (
    JOURNAL_FILE,
    LOGS_DIR,
    OPERATIONS_DIR,
    operation_from_json,
    operation_to_json,
)
from reconciler.common.atomic import write_json_atomic
from reconciler.common.operation import Operation
from reconciler.common.wire import ProtocolError

KEEP = 50
FORMAT = 1
#: Readable by the state dir's group (the agent's, under the NixOS module); root writes.
FILE_MODE = 0o640


class JournalError(Exception):
    """The journal exists but cannot be read; the helper refuses to guess."""


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
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: `[[[[…`
            raise JournalError(f"{self.path}: cannot read the journal: {exc}") from None
        try:
            if doc.get("v") != FORMAT:
                raise JournalError(f"{self.path}: journal format {doc.get('v')!r} unknown")
            raw = doc["operation"]
            return None if raw is None else operation_from_json(raw)
        except (KeyError, TypeError, ValueError, AttributeError, ProtocolError) as exc:
            raise JournalError(f"{self.path}: malformed journal: {exc!r}") from None

    def write(self, op: Operation | None) -> None:
        write_json_atomic(
            self.path,
            {"v": FORMAT, "operation": None if op is None else operation_to_json(op)},
            mode=FILE_MODE,
        )

    def finish(self, op: Operation, between: Callable[[], None] = lambda: None) -> None:
        """Archive a finished operation, then clear the journal (both idempotent)."""
        write_json_atomic(self.archive / f"{op.id}.json", operation_to_json(op), mode=FILE_MODE)
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
            except (OSError, ValueError, RecursionError):
                continue
        return out

    def finished(self, limit: int = 10) -> tuple[Operation, ...]:
        """`recent()` as values; a file that does not read as an operation is left out."""
        return tuple(op for doc in self.recent(limit) if (op := _operation(doc)) is not None)

    def lookup(self, op_id: str) -> Operation | None:
        """`find()` as a value."""
        doc = self.find(op_id)
        return None if doc is None else _operation(doc)

    def find(self, op_id: str) -> dict[str, Any] | None:
        if "/" in op_id or op_id.startswith("."):
            return None
        try:
            value: dict[str, Any] = json.loads(
                (self.archive / f"{op_id}.json").read_text(encoding="utf-8")
            )
            return value
        except (OSError, ValueError, RecursionError):
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


def _operation(doc: dict[str, Any]) -> Operation | None:
    try:
        return operation_from_json(doc)
    except (KeyError, TypeError, ValueError, ProtocolError):
        return None
