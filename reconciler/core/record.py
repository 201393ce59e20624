"""The agent's memory between passes, and how the helper's finished operations change it.

Owns `StoredRecord` (the `AgentRecord` that `decide` reads, plus what only the
agent knows: the operations already folded in, the closure diff and branch
tip of each deploy it started, the spec's generation, and the branch tip
that carried the last applied revision) and `fold`, which takes in the
helper's finished operations this agent has not seen yet. Pure: the shell
(`controller.store`) reads and writes the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from reconciler.common.operation import Operation
from reconciler.core.decide import AgentRecord
from reconciler.core.history import HistoryEntry, entry_from_operation, ingest


@dataclass(frozen=True)
class StoredRecord:
    """Everything the agent remembers between passes."""

    record: AgentRecord = field(default_factory=AgentRecord)
    seen_operations: tuple[str, ...] = ()
    closure_diffs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    spec_digest: str | None = None
    generation: int = 0  # bumped when the desired state's content changes (metadata.generation)
    applied_source: str | None = None  # the branch tip that carried last_applied_revision
    deploy_sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def deploying(self, operation_id: str, source: str, closure_diff: str | None) -> StoredRecord:
        """Remember that `operation_id` deploys what the branch tip `source` asked for, and
        the closure diff of what it deploys."""
        return replace(
            self,
            deploy_sources=MappingProxyType({**self.deploy_sources, operation_id: source}),
            closure_diffs=MappingProxyType(
                {**self.closure_diffs, operation_id: closure_diff or ""}
            ),
        )

    def finished(self, entry: HistoryEntry, carried_by: str | None = None) -> StoredRecord:
        """After `entry` was ingested: a successful apply makes its tip the applied source:
        the one this agent remembers starting it for, else `carried_by` (the tip the helper
        journaled with the request, for an apply started by an agent that lost its state),
        else unknown (None)."""
        if entry.kind != "apply" or entry.result != "Succeeded":
            return self
        source = self.deploy_sources.get(entry.operation_id) or carried_by or None
        return replace(self, applied_source=source)

    def converged(self, revision: str, source: str) -> StoredRecord:
        """The branch tip `source` asks for `revision`, which is the applied one: from now on
        that tip is what carried it (heals records kept before the source was)."""
        if revision != self.record.last_applied_revision or source == self.applied_source:
            return self
        return replace(self, applied_source=source)


def fold(
    stored: StoredRecord, recent: Sequence[Operation]
) -> tuple[StoredRecord, tuple[Operation, ...], tuple[HistoryEntry, ...]]:
    """Take in the finished operations (`recent`, newest first) this agent has not seen yet,
    oldest first: the record after them, those operations, and their history entries."""
    seen = set(stored.seen_operations)
    new = tuple(op for op in reversed(recent) if op.id not in seen)
    entries = []
    for op in new:
        entry = entry_from_operation(op, stored.closure_diffs.get(op.id))
        stored = replace(
            stored,
            record=ingest(stored.record, entry),
            seen_operations=(*stored.seen_operations, op.id),
        ).finished(entry, op.request.source_revision or None)
        entries.append(entry)
    return stored, new, tuple(entries)
