"""The helper's spans, rebuilt from its timed journal (the helper imports no SDK).

Owns the mapping from a finished helper operation (an `Operation`, as
`status` answers it: its phases, checks, transitions and the request's
traceparent) to spans with their real start and end times:

    helper.activate       the `activate` step
    helper.health_check   one per `check:<name>` step; pullnix.check.{name,kind,attempts,ok}
    helper.confirm        waiting for the new generation's agent to confirm
    helper.commit         from Committing to the end; its steps are events
    helper.rollback       from RollingBack to the end; its steps are events

They are children of the span the operation's traceparent names (the pass
that started the deploy), so a deploy is one trace even when another agent
process learns how it ended. A failed step, and the rollback of a deploy,
have status Error with the helper's message.

`operation_spans` is pure (data in, values out); `emit_operation` records them.

Must not: talk to the helper or decide anything about the operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.common.operation import CheckResult, Operation, Phase
from reconciler.telemetry.tracing import TimedSpan, emit

COMMIT_STEPS = frozenset({"set-profile", "install-boot", "record"})
ROLLBACK_STEPS = frozenset({"restore-profile", "reactivate", "restore-boot"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def emit_operation(op: Operation) -> None:
    """Record the spans of one finished operation under its own trace."""
    emit(operation_spans(op), op.request.traceparent or None)


def operation_spans(op: Operation) -> list[TimedSpan]:
    base: dict[str, Any] = {
        "pullnix.operation.id": op.id,
        "pullnix.operation.kind": op.kind,
        "nix.store_path": op.request.store_path or None,
        "pullnix.revision": op.request.revision or None,
        "vcs.ref.head.revision": op.request.revision or None,
    }
    finished = to_ns(op.finished_at)
    checks: dict[str, list[CheckResult]] = {}
    for check in op.checks:
        checks.setdefault(check.name, []).append(check)
    spans: list[TimedSpan] = []
    grouped: dict[str, list[Phase]] = {"commit": [], "rollback": []}
    for phase in op.phases:
        name = phase.name
        if name in COMMIT_STEPS:
            grouped["commit"].append(phase)
            continue
        if name in ROLLBACK_STEPS:
            grouped["rollback"].append(phase)
            continue
        start = to_ns(phase.started_at)
        if start is None:
            continue
        end = to_ns(phase.finished_at) or finished or start
        error = _error_of(phase)
        if name.startswith("check:"):
            check_name = name.removeprefix("check:")
            found = checks.get(check_name)
            result = (found.pop(0) if len(found) > 1 else found[0]) if found else None
            attrs = {
                **base,
                "pullnix.check.name": check_name,
                "pullnix.check.kind": result.kind if result else None,
                "pullnix.check.attempts": result.attempts if result else None,
                "pullnix.check.ok": result.ok if result else None,
            }
            spans.append(TimedSpan("helper.health_check", start, end, attrs, error))
        else:
            spans.append(TimedSpan(f"helper.{name.replace('-', '_')}", start, end, base, error))
    for group, entered in (("commit", "Committing"), ("rollback", "RollingBack")):
        span = _group_span(group, entered, grouped[group], op, base, finished)
        if span is not None:
            spans.append(span)
    return sorted(spans, key=lambda s: s.start_ns)


def _group_span(
    group: str,
    entered: str,
    steps: list[Phase],
    op: Operation,
    base: Mapping[str, Any],
    finished: int | None,
) -> TimedSpan | None:
    """helper.commit or helper.rollback: from entering its state to leaving it."""
    start, end = _state_window(op, entered)
    starts = [t for t in (to_ns(s.started_at) for s in steps) if t is not None]
    ends = [t for t in (to_ns(s.finished_at) for s in steps) if t is not None]
    start = start if start is not None else min(starts, default=None)
    if start is None:
        return None
    end = end or finished or max(ends, default=start)
    events = [
        (
            s.name,
            to_ns(s.finished_at) or end,
            {"pullnix.step.ok": s.ok, "pullnix.step.message": s.message or None},
        )
        for s in steps
    ]
    state, kind = str(op.state), op.kind
    failed_step = next((s for s in steps if s.ok is False), None)
    error: str | None = None
    deploy_failed = (
        state != "Succeeded" if group == "commit" else kind == "apply" or state == "Failed"
    )
    if deploy_failed:
        error = op.message or f"the operation ended {state}"
    elif failed_step is not None:
        error = _error_of(failed_step)
    attrs = {**base, "pullnix.outcome": state, "pullnix.result": state}
    if group == "commit":
        attrs["nixos.generation"] = op.generation
    else:
        attrs["pullnix.rollback.reason"] = _why(op, entered) or None
    return TimedSpan(f"helper.{group}", start, end, attrs, error, tuple(events))


def _state_window(op: Operation, state: str) -> tuple[int | None, int | None]:
    """When the operation first entered `state`, and when it next entered another."""
    start: int | None = None
    for transition in op.transitions:
        at = to_ns(transition.at)
        if start is None:
            if transition.state == state:
                start = at
        elif transition.state != state:
            return start, at
    return start, None


def _why(op: Operation, state: str) -> str:
    """The message of the operation's first entry into `state`, else its final message."""
    for transition in op.transitions:
        if transition.state == state and transition.message:
            return transition.message
    return op.message


def _error_of(phase: Phase) -> str | None:
    if phase.ok is not False:
        return None
    return phase.message or f"{phase.name} failed"


def to_ns(stamp: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time, or None if it is not one."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
