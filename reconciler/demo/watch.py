"""Following the agent and the helper while the demo waits: every pass, every step, once.

Owns turning what the agent's local API (its status and recent passes) and the
helper's `status` (its operations, their transitions and checks) report into
progress lines, until the caller's condition holds and the agent is idle.
Must not: act on the stage; it only reads and reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from reconciler.common.client import HelperError, HelperUnavailable
from reconciler.common.operation import CheckResult, Operation, Transition
from reconciler.demo.progress import Progress
from reconciler.demo.stage import DemoFailed, Stage, check_alive

ACT_TIMEOUT = 300.0


def follow(
    stage: Stage, progress: Progress, what: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Print what the agent and the helper report until `done(status)` and the agent is idle;
    the newest history entry then (or {})."""
    seen_steps: dict[str, int] = {}
    known_ops = {op.id for op in helper_ops(stage)}
    deadline = time.monotonic() + ACT_TIMEOUT
    while time.monotonic() < deadline:
        check_alive(stage)
        answer = stage.agent.request("status")
        agent, status = answer["agent"], answer["status"].get("status", {})
        for op in reversed(helper_ops(stage)):
            if op.id not in known_ops:
                _report_operation(op, seen_steps, progress)
        for report in reversed(agent.get("recentPasses") or []):
            if report["number"] not in stage.passes_shown:
                stage.passes_shown.add(report["number"])
                _report_pass(report, progress)
        last = agent.get("lastPass")
        idle = bool(last and last["settled"] and not agent["running"] and not agent["following"])
        if idle and done(status):
            progress.done_waiting()
            history = status.get("history") or [{}]
            return dict(history[0])
        progress.waiting(f"waiting for {what}")
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {ACT_TIMEOUT:.0f}s waiting for {what}")


def _report_pass(report: dict[str, Any], progress: Progress) -> None:
    mood = "ok" if report["phase"] == "Ready" else "bad" if report["error"] else ""
    verdict = (
        report["phase"]
        if report["phase"] == report["reason"]
        else f"{report['phase']} ({report['reason']})"
    )
    progress.event(
        "agent",
        f"pass {report['number']} ({', '.join(report['reasons'])}): {verdict}: {report['message']}",
        mood,
    )


def _report_operation(op: Operation, seen: dict[str, int], progress: Progress) -> None:
    """New steps of a helper operation: its state transitions and each check's result."""
    steps: list[tuple[str, Transition | CheckResult]] = [("state", t) for t in op.transitions]
    steps += [("check", c) for c in op.checks if c.finished_at]
    steps.sort(key=lambda s: s[1].at if isinstance(s[1], Transition) else s[1].finished_at)
    for _kind, step in steps[seen.get(op.id, 0) :]:
        if isinstance(step, Transition):
            state = str(step.state)
            mood = {"Succeeded": "ok", "RolledBack": "bad", "Failed": "bad"}.get(state, "")
            detail = f": {step.message}" if step.message else ""
            progress.event("helper", f"{op.kind} {op.id[-6:]}: {state}{detail}", mood)
        else:
            verdict = "passed" if step.ok else f"failed: {step.message}"
            progress.event(
                "helper",
                f"health check {step.name} ({step.kind}) {verdict}",
                "ok" if step.ok else "bad",
            )
    seen[op.id] = len(steps)


def helper_ops(stage: Stage) -> list[Operation]:
    """The helper's operation in progress and its recent ones, newest first."""
    try:
        status = stage.helper.helper_status()
    except (HelperUnavailable, HelperError):
        return []
    ops = [status.operation] if status.operation is not None else []
    return ops + [op for op in status.recent if op not in ops]
