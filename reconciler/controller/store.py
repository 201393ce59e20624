"""The agent's state dir: its record (memory between passes) and `status.json` (what it reports).

Owns two files under `state_dir`, both written atomically:

- `record.json`: the `StoredRecord` (`core.record`): the `AgentRecord` that
  `decide` reads (last applied revision and store path, failed revisions, a
  pending retry, suspension), the helper operations already folded in, per
  operation what only the agent knew when it started it (the closure diff, the
  branch tip that carried the revision), and the branch tip that carried the last applied revision
  (`lastAppliedSourceRevision`: what downgrade protection checks a new tip
  against, since a `spec.revision` pin may deploy a commit off the branch);
- `status.json`: the Kubernetes-style document `pullnix status --json` prints
  (`apiVersion`, `kind`, `metadata`, `spec`, `status` with conditions,
  revisions, generation, history).

Read-modify-write of the record by the CLI (suspend, resume, retry) while an
agent runs is serialised with an flock on `record.lock`. Must not: decide.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler.common.atomic import write_json_atomic
from reconciler.core.conditions import Condition
from reconciler.core.decide import AgentRecord, Failure
from reconciler.core.history import HistoryEntry
from reconciler.core.record import StoredRecord

RECORD_FILE = "record.json"
STATUS_FILE = "status.json"
LOCK_FILE = "record.lock"
_MAX_SEEN = 200


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def status_path(self) -> Path:
        return self.state_dir / STATUS_FILE

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the record's lock (for a read-modify-write)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load_record(self) -> StoredRecord:
        doc = _read_json(self.state_dir / RECORD_FILE)
        if not doc:
            return StoredRecord()
        rec = AgentRecord(
            last_applied_revision=doc.get("lastAppliedRevision"),
            last_applied_store_path=doc.get("lastAppliedStorePath"),
            failed=MappingProxyType(
                {
                    rev: Failure(f["reason"], f.get("message", ""))
                    for rev, f in (doc.get("failed") or {}).items()
                }
            ),
            retry_revision=doc.get("retryRevision"),
            suspended=bool(doc.get("suspended", False)),
        )
        return StoredRecord(
            record=rec,
            seen_operations=tuple(doc.get("seenOperations") or ()),
            closure_diffs=MappingProxyType(dict(doc.get("closureDiffs") or {})),
            spec_digest=doc.get("specDigest"),
            generation=int(doc.get("generation") or 0),
            applied_source=doc.get("lastAppliedSourceRevision"),
            deploy_sources=MappingProxyType(dict(doc.get("deploySources") or {})),
        )

    def save_record(self, stored: StoredRecord) -> None:
        rec = stored.record
        write_json_atomic(
            self.state_dir / RECORD_FILE,
            {
                "version": 1,
                "lastAppliedRevision": rec.last_applied_revision,
                "lastAppliedStorePath": rec.last_applied_store_path,
                "failed": {
                    rev: {"reason": f.reason, "message": f.message} for rev, f in rec.failed.items()
                },
                "retryRevision": rec.retry_revision,
                "suspended": rec.suspended,
                "seenOperations": list(stored.seen_operations[-_MAX_SEEN:]),
                "closureDiffs": {
                    k: v for k, v in stored.closure_diffs.items() if k not in stored.seen_operations
                },
                "specDigest": stored.spec_digest,
                "generation": stored.generation,
                "lastAppliedSourceRevision": stored.applied_source,
                "deploySources": {
                    k: v
                    for k, v in stored.deploy_sources.items()
                    if k not in stored.seen_operations
                },
            },
            unless_same=True,
        )  # most passes change nothing here: spare them the fsyncs

    def update_record(self, **changes: Any) -> StoredRecord:
        """Change fields of the AgentRecord under the lock (the CLI's suspend/resume/retry)."""
        with self.locked():
            stored = self.load_record()
            stored = replace(stored, record=replace(stored.record, **changes))
            self.save_record(stored)
            return stored

    def load_status(self) -> dict[str, Any]:
        return _read_json(self.status_path) or {}

    def save_status(self, doc: Mapping[str, Any]) -> None:
        write_json_atomic(self.status_path, dict(doc))


def conditions_of(status_doc: Mapping[str, Any]) -> tuple[Condition, ...]:
    """The conditions in a status document (none when absent or unreadable)."""
    try:
        return tuple(
            Condition.from_json(c) for c in status_doc.get("status", {}).get("conditions", [])
        )
    except (KeyError, TypeError, ValueError):
        return ()


def history_of(status_doc: Mapping[str, Any]) -> tuple[HistoryEntry, ...]:
    try:
        return tuple(
            HistoryEntry.from_json(e) for e in status_doc.get("status", {}).get("history", [])
        )
    except (TypeError, AttributeError):
        return ()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
