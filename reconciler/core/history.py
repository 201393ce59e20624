"""History: what the helper's finished operations mean for the agent's record.

Owns the fold of a finished helper operation (an `Operation`, as the
helper's `status` answers it) into the agent's record and into one history entry: a success
moves `lastAppliedRevision`, a rollback or a failure marks the revision so it
is not retried, and each becomes an entry with its health checks, closure
diff and trace id. Pure: the shell reads the helper and writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from reconciler.common.operation import Operation
from reconciler.core.decide import AgentRecord, Failure
from reconciler.core.errors import FailureReason

RESULTS = ("Succeeded", "RolledBack", "Failed")
MAX_HISTORY = 50


@dataclass(frozen=True)
class HistoryEntry:
    """One past deployment, in the shape `pullnix history --json` prints."""

    operation_id: str
    revision: str
    store_path: str
    generation: int | None
    result: str
    started_at: str
    finished_at: str
    health_checks: tuple[Mapping[str, Any], ...] = ()
    closure_diff: str | None = None
    trace_id: str | None = None
    message: str = ""
    kind: str = "apply"

    def to_json(self) -> dict[str, Any]:
        return {
            "operationId": self.operation_id,
            "kind": self.kind,
            "revision": self.revision,
            "storePath": self.store_path,
            "generation": self.generation,
            "result": self.result,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "healthChecks": [dict(c) for c in self.health_checks],
            "closureDiff": self.closure_diff,
            "traceId": self.trace_id,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            operation_id=str(doc.get("operationId", "")),
            kind=str(doc.get("kind", "apply")),
            revision=str(doc.get("revision", "")),
            store_path=str(doc.get("storePath", "")),
            generation=doc.get("generation"),
            result=str(doc.get("result", "")),
            started_at=str(doc.get("startedAt", "")),
            finished_at=str(doc.get("finishedAt", "")),
            health_checks=tuple(doc.get("healthChecks") or ()),
            closure_diff=doc.get("closureDiff"),
            trace_id=doc.get("traceId"),
            message=str(doc.get("message", "")),
        )


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`)."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def entry_from_operation(op: Operation, closure_diff: str | None = None) -> HistoryEntry:
    """The history entry of a finished helper operation."""
    return HistoryEntry(
        operation_id=op.id,
        kind=op.kind,
        revision=op.request.revision,
        store_path=op.request.store_path,
        generation=op.generation,
        result=str(op.state),
        started_at=op.created_at,
        finished_at=op.finished_at or "",
        health_checks=tuple(
            {
                "name": c.name,
                "kind": c.kind,
                "ok": c.ok,
                "message": c.message,
                "attempts": c.attempts,
            }
            for c in op.checks
        ),
        closure_diff=closure_diff,
        trace_id=trace_id_of(op.request.traceparent),
        message=op.message,
    )


def ingest(record: AgentRecord, entry: HistoryEntry) -> AgentRecord:
    """The record after a finished operation.

    Succeeded: the revision and store path become the last applied, and any
    failure of that revision is forgotten. RolledBack or Failed: the revision
    is marked so `decide` does not try it again by itself. A retry request for
    the revision is used up either way. A manual rollback (kind `rollback`)
    moves the last applied store path to what is running now and marks the
    revision it left as rolled back.
    """
    if entry.kind == "reboot":  # the helper's reboot: it applies and fails no revision
        return record
    failed = dict(record.failed)
    retry = None if record.retry_revision == entry.revision else record.retry_revision
    if entry.result == "Succeeded" and entry.kind == "apply":
        failed.pop(entry.revision, None)
        return replace(
            record,
            last_applied_revision=entry.revision or None,
            last_applied_store_path=entry.store_path or None,
            failed=MappingProxyType(failed),
            retry_revision=retry,
        )
    if entry.result == "Succeeded":  # a rollback the operator asked for
        if record.last_applied_revision:
            failed[record.last_applied_revision] = Failure(
                "RolledBack", entry.message or "rolled back on request"
            )
        return replace(
            record,
            last_applied_revision=entry.revision or None,
            last_applied_store_path=entry.store_path or None,
            failed=MappingProxyType(failed),
            retry_revision=retry,
        )
    if entry.revision:
        reason: FailureReason = "RolledBack" if entry.result == "RolledBack" else "ActivationFailed"
        failed[entry.revision] = Failure(reason, entry.message)
    return replace(record, failed=MappingProxyType(failed), retry_revision=retry)


def append_history(
    history: Sequence[HistoryEntry], entry: HistoryEntry
) -> tuple[HistoryEntry, ...]:
    """Newest first, bounded."""
    return (entry, *history)[:MAX_HISTORY]
