"""What a finished pass tells the trace and the metrics.

Owns putting one pass's decision and verdict on its root span
(`pullnix.action`, `pullnix.outcome`, `pullnix.phase`, the system it saw) and
the machine's state in the metrics; and for each helper operation the pass
took in: its spans under the trace of the pass that started it (rebuilt from
the helper's journal), a link from this pass, and its metrics.

Must not: decide anything, or write the status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from reconciler.common.operation import Operation
from reconciler.core.decide import Action, AgentRecord
from reconciler.core.errors import PullnixError, TerminalError
from reconciler.core.history import HistoryEntry
from reconciler.core.status import Outcome
from reconciler.nix.observe import SystemObservation
from reconciler.telemetry import metrics
from reconciler.telemetry.helper_spans import emit_operation
from reconciler.telemetry.tracing import PassTrace

log = logging.getLogger("pullnix.reconcile")


def report_operations(
    trace: PassTrace, finished: Sequence[Operation], entries: Sequence[HistoryEntry]
) -> None:
    """The helper's operations this pass took in (`entries` are their history entries)."""
    for op, entry in zip(finished, entries, strict=True):
        emit_operation(op)
        trace.link(op.request.traceparent or None)
        trace.set({"pullnix.result": entry.result})
        metrics.record_operation(entry.result, entry.kind, entry.health_checks)
        log.info(
            "operation %s ended %s for %s", entry.operation_id, entry.result, entry.revision[:12]
        )


def report_pass(
    trace: PassTrace,
    action: Action | None,
    revision: str | None,
    outcome: Outcome,
    record: AgentRecord,
    system: SystemObservation | None,
    reboot: bool | None,
    failure: PullnixError | None = None,
) -> None:
    """The pass's decision and verdict on its root span, and the machine in the metrics;
    `failure` stopped the pass, if anything did."""
    if action is not None and revision is not None:
        trace.set(
            {
                "pullnix.action": type(action).__name__,
                "pullnix.revision": revision,
                "vcs.ref.head.revision": revision,
            }
        )
    trace.set(
        {
            "pullnix.outcome": outcome.reason,
            "pullnix.phase": outcome.phase,
            "nix.store_path": system.current_system if system else None,
            "nixos.generation": system.current_generation if system else None,
        }
    )
    if outcome.phase in ("Stalled", "Failing"):
        trace.fail(f"{outcome.reason}: {outcome.message}")
    if failure is not None:
        stalled = isinstance(failure, TerminalError)
        log.warning("%s: %s: %s", "stalled" if stalled else "pass failed", *_said(failure))
    metrics.record_state(
        revision=record.last_applied_revision,
        store_path=record.last_applied_store_path,
        generation=system.current_generation if system else None,
        reboot_required=reboot,
        suspended=record.suspended,
    )


def _said(failure: PullnixError) -> tuple[str, str]:
    return failure.reason, failure.message
