"""The helper's spans, rebuilt from its timed journal (the helper imports no SDK).

Owns the mapping from a finished helper operation (its JSON form, as
`status` answers it: `phases[]`, `checks[]`, `transitions[]`,
`traceparent`) to spans with their real start and end times:

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

from reconciler.telemetry.tracing import TimedSpan, emit

COMMIT_STEPS = frozenset({"set-profile", "install-boot", "record"})
ROLLBACK_STEPS = frozenset({"restore-profile", "reactivate", "restore-boot"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def emit_operation(op: Mapping[str, Any]) -> None:
    """Record the spans of one finished operation under its own trace."""
    emit(operation_spans(op), op.get("traceparent") or None)


def operation_spans(op: Mapping[str, Any]) -> list[TimedSpan]:
    base: dict[str, Any] = {
        "pullnix.operation.id": str(op.get("id", "")),
        "pullnix.operation.kind": str(op.get("kind", "apply")),
        "nix.store_path": op.get("storePath") or None,
        "pullnix.revision": op.get("revision") or None,
        "vcs.ref.head.revision": op.get("revision") or None,
    }
    finished = to_ns(op.get("finishedAt"))
    checks: dict[str, list[Mapping[str, Any]]] = {}
    for check in op.get("checks") or ():
        checks.setdefault(str(check.get("name")), []).append(check)
    spans: list[TimedSpan] = []
    grouped: dict[str, list[Mapping[str, Any]]] = {"commit": [], "rollback": []}
    for phase in op.get("phases") or ():
        name = str(phase.get("name", ""))
        if name in COMMIT_STEPS:
            grouped["commit"].append(phase)
            continue
        if name in ROLLBACK_STEPS:
            grouped["rollback"].append(phase)
            continue
        start = to_ns(phase.get("startedAt"))
        if start is None:
            continue
        end = to_ns(phase.get("finishedAt")) or finished or start
        error = _error_of(phase)
        if name.startswith("check:"):
            check_name = name.removeprefix("check:")
            found = checks.get(check_name) or [{}]
            check = found.pop(0) if len(found) > 1 else found[0]
            attrs = {
                **base,
                "pullnix.check.name": check_name,
                "pullnix.check.kind": check.get("kind"),
                "pullnix.check.attempts": check.get("attempts"),
                "pullnix.check.ok": check.get("ok"),
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
    steps: list[Mapping[str, Any]],
    op: Mapping[str, Any],
    base: Mapping[str, Any],
    finished: int | None,
) -> TimedSpan | None:
    """helper.commit or helper.rollback: from entering its state to leaving it."""
    start, end = _state_window(op, entered)
    starts = [t for t in (to_ns(s.get("startedAt")) for s in steps) if t is not None]
    ends = [t for t in (to_ns(s.get("finishedAt")) for s in steps) if t is not None]
    start = start if start is not None else min(starts, default=None)
    if start is None:
        return None
    end = end or finished or max(ends, default=start)
    events = [
        (
            str(s.get("name")),
            to_ns(s.get("finishedAt")) or end,
            {"pullnix.step.ok": s.get("ok"), "pullnix.step.message": s.get("message") or None},
        )
        for s in steps
    ]
    state, kind = str(op.get("state", "")), str(op.get("kind", "apply"))
    failed_step = next((s for s in steps if s.get("ok") is False), None)
    error: str | None = None
    deploy_failed = (
        state != "Succeeded" if group == "commit" else kind == "apply" or state == "Failed"
    )
    if deploy_failed:
        error = str(op.get("message") or f"the operation ended {state}")
    elif failed_step is not None:
        error = _error_of(failed_step)
    attrs = {**base, "pullnix.outcome": state, "pullnix.result": state}
    if group == "commit":
        attrs["nixos.generation"] = op.get("generation")
    else:
        attrs["pullnix.rollback.reason"] = _why(op, entered) or None
    return TimedSpan(f"helper.{group}", start, end, attrs, error, tuple(events))


def _state_window(op: Mapping[str, Any], state: str) -> tuple[int | None, int | None]:
    """When the operation first entered `state`, and when it next entered another."""
    start: int | None = None
    for transition in op.get("transitions") or ():
        at = to_ns(transition.get("at"))
        if start is None:
            if transition.get("state") == state:
                start = at
        elif transition.get("state") != state:
            return start, at
    return start, None


def _why(op: Mapping[str, Any], state: str) -> str:
    """The message of the operation's first entry into `state`, else its final message."""
    for transition in op.get("transitions") or ():
        if transition.get("state") == state and transition.get("message"):
            return str(transition["message"])
    return str(op.get("message") or "")


def _error_of(phase: Mapping[str, Any]) -> str | None:
    if phase.get("ok") is not False:
        return None
    return str(phase.get("message") or f"{phase.get('name')} failed")


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
