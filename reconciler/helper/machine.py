"""The helper's operation as a pure state machine: events in, next state and effect out.

Owns the policy of an operation: which step comes next, what a failure leads
to, how a restart resumes, and how a rollback puts the machine back the way
it was. Pure: no clock (callers pass `now`), no files, no processes; the shell
(`operator.py`) performs the effects this module names and feeds the outcome
back as events.

    Pending -> Activating -> Verifying -> Committing -> Succeeded
                    \\            \\           \\
                     +-----------+-----------+--> RollingBack -> RolledBack
                                                       \\
                                                        +--> Failed

How a rollback puts things back (decided from what the operation *touched*,
recorded before each touching step, and what it found before it began: the
previous running system A = `current_system` and profile target P):

1. the profile moved (Committing began) -> point it at P again (the old
   generation if it still exists, else a new generation of P);
2. the running system changed and the boot default changed and A == P ->
   `A/bin/switch-to-configuration switch` (the normal case of a non-trial
   switch: one call restores both);
3. otherwise, the running system changed -> `A ... test` (running system back,
   bootloader untouched: a trial never touched it), and the boot default
   changed -> `P ... boot` (the bootloader follows the profile again).

Journaling (`needs_journal`): a state is journaled before its first step is
acted on; steps of Committing and RollingBack are idempotent, so a restart
redoes the one whose outcome was not journaled.

Restart recovery: Pending (nothing done yet) -> RolledBack without effects;
Activating or Verifying -> RollingBack; Committing -> finish the commit;
RollingBack -> finish the rollback. Every step is idempotent, so redoing the
one in flight at the crash is safe.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.common.operation import (
    TERMINAL,
    Activate,
    AwaitConfirm,
    Broke,
    Checked,
    CheckResult,
    Confirmed,
    Done,
    Effect,
    Event,
    InstallBoot,
    Operation,
    Phase,
    Previous,
    Proceed,
    Reactivate,
    RecordCommit,
    Restarted,
    RestoreBoot,
    RestoreProfile,
    RunCheck,
    SetProfile,
    State,
    Touched,
    Transition,
    WaitOver,
    iso,
)
from reconciler.common.protocol import ApplyRequest

# The operation's values are re-exported, so callers need only `machine as m`.
__all__ = [
    "TERMINAL",
    "Activate",
    "AwaitConfirm",
    "Broke",
    "CheckResult",
    "Checked",
    "Confirmed",
    "Done",
    "Effect",
    "Event",
    "InstallBoot",
    "Operation",
    "Phase",
    "Previous",
    "Proceed",
    "Reactivate",
    "RecordCommit",
    "Restarted",
    "RestoreBoot",
    "RestoreProfile",
    "RunCheck",
    "SetProfile",
    "State",
    "Touched",
    "Transition",
    "WaitOver",
    "activation_action",
    "advance",
    "begin",
    "commits",
    "iso",
    "needs_journal",
    "next_effect",
]


def begin(
    op_id: str, kind: str, request: ApplyRequest, previous: Previous, now: float
) -> Operation:
    at = iso(now)
    op = Operation(
        id=op_id,
        kind=kind,
        request=request,
        previous=previous,
        state=State.PENDING,
        created_at=at,
        transitions=(Transition(State.PENDING, at, "accepted"),),
    )
    return _open_phase(op, now)


def activation_action(req: ApplyRequest) -> str:
    return "test" if req.trial else req.action


def commits(req: ApplyRequest) -> bool:
    """`test` means "until reboot", on trial or not: nothing to commit (committing sets the
    profile and the boot default, which is what `test` asks to leave alone)."""
    return req.action != "test"


def next_effect(op: Operation) -> Effect | None:
    """What the shell must do now; None once the operation is over."""
    req = op.request
    if op.state is State.PENDING:
        return Proceed()
    if op.state is State.ACTIVATING:
        return Activate(req.store_path, activation_action(req))
    if op.state is State.VERIFYING:
        if len(op.checks) < len(req.health_checks):
            i = len(op.checks)
            return RunCheck(i, req.health_checks[i])
        if req.require_confirm and op.confirmed_at is None:
            return AwaitConfirm(op.confirm_deadline or 0.0)
        return Proceed()
    if op.state is State.COMMITTING:
        return _next_in(op, _commit_plan(op))
    if op.state is State.ROLLING_BACK:
        return _next_in(op, _rollback_plan(op))
    return None


def _next_in(op: Operation, plan: list[Effect]) -> Effect:
    for effect in plan:
        if effect.step not in op.done:
            return effect
    return Proceed()


def _commit_plan(op: Operation) -> list[Effect]:
    req = op.request
    if not commits(req):
        return []
    return [
        SetProfile(req.store_path, req.generation),
        InstallBoot(req.store_path),
        RecordCommit(req.store_path, req.revision, op.generation, req.source_revision),
    ]


def _rollback_plan(op: Operation) -> list[Effect]:
    prev, touched = op.previous, op.touched
    plan: list[Effect] = []
    if touched.profile and prev.profile_path:
        plan.append(RestoreProfile(prev.profile_path, prev.profile_generation))
    if (
        touched.running
        and touched.boot
        and prev.current_system == prev.profile_path
        and prev.current_system
    ):
        plan.append(Reactivate(prev.current_system, "switch"))
        return plan
    if touched.running and prev.current_system:
        plan.append(Reactivate(prev.current_system, "test"))
    if touched.boot and prev.profile_path:
        plan.append(RestoreBoot(prev.profile_path))
    return plan


def _cannot_roll_back(op: Operation) -> str:
    prev, touched = op.previous, op.touched
    if touched.running and not prev.current_system:
        return "there was no running system before (current_system absent) to go back to"
    if (touched.boot or touched.profile) and not prev.profile_path:
        return "the system profile did not exist before, so there is no generation to restore"
    return ""


def advance(op: Operation, event: Event, now: float) -> Operation:  # noqa: C901, PLR0912 - the table
    """The operation after `event`; the shell journals it before acting on it."""
    if isinstance(event, Confirmed):
        return op if op.confirmed_at or op.terminal else replace(op, confirmed_at=iso(now))
    if isinstance(event, Restarted):
        return _recover(op, now)
    if op.terminal:
        return op
    op = _close_phase(op, event, now)
    state, req = op.state, op.request
    if state is State.PENDING:
        touched = Touched(
            running=req.trial or req.action in ("switch", "test"),
            boot=not req.trial and req.action in ("switch", "boot"),
        )
        return _to(replace(op, touched=touched), State.ACTIVATING, now)
    if state is State.ACTIVATING:
        if isinstance(event, Broke):
            return _to(op, State.ROLLING_BACK, now, f"activation failed: {event.message}")
        return _to(replace(op, confirm_deadline=now + req.confirm_timeout), State.VERIFYING, now)
    if state is State.VERIFYING:
        if isinstance(event, Checked):
            op = replace(op, checks=(*op.checks, event.result))
            if not event.result.ok:
                return _to(
                    op,
                    State.ROLLING_BACK,
                    now,
                    f"health check {event.result.name!r} failed: {event.result.message}",
                )
            return _open_phase(op, now)
        if isinstance(event, WaitOver) and op.confirmed_at is None:
            return _to(
                op,
                State.ROLLING_BACK,
                now,
                f"the new generation's agent did not confirm within {req.confirm_timeout:g}s",
            )
        if isinstance(event, Broke):
            return _to(op, State.ROLLING_BACK, now, event.message)
        return _to(
            replace(
                op,
                touched=replace(
                    op.touched, profile=commits(req), boot=op.touched.boot or commits(req)
                ),
            ),
            State.COMMITTING,
            now,
        )
    if state is State.COMMITTING:
        effect = next_effect(op)
        assert effect is not None
        if isinstance(event, Broke):
            if isinstance(effect, RecordCommit):
                return _to(
                    op,
                    State.FAILED,
                    now,
                    "the generation is committed but could not "
                    f"be recorded (downgrade protection needs it): {event.message}",
                )
            return _to(
                op, State.ROLLING_BACK, now, f"commit failed at {effect.step}: {event.message}"
            )
        if isinstance(effect, Proceed):
            message = (
                f"committed generation {op.generation}"
                if commits(req)
                else "activated until reboot (action test): nothing to commit"
            )
            return _to(op, State.SUCCEEDED, now, message)
        if isinstance(effect, SetProfile):
            op = replace(op, generation=event.generation if isinstance(event, Done) else None)
        return _open_phase(replace(op, done=(*op.done, effect.step)), now)
    if state is State.ROLLING_BACK:
        effect = next_effect(op)
        assert effect is not None
        if isinstance(event, Broke):
            return _to(
                op,
                State.FAILED,
                now,
                f"ROLLBACK FAILED at {effect.step}: {event.message}; the machine needs a human",
            )
        if isinstance(effect, Proceed):
            cause = _cannot_roll_back(op)
            if cause:
                return _to(op, State.FAILED, now, f"ROLLBACK INCOMPLETE: {cause}")
            reason = next(
                (t.message for t in reversed(op.transitions) if t.state is State.ROLLING_BACK), ""
            )
            return _to(op, State.ROLLED_BACK, now, reason)
        return _open_phase(replace(op, done=(*op.done, effect.step)), now)
    raise AssertionError(f"no transition from {state}")  # every state is handled above


def needs_journal(before: Operation, after: Operation) -> bool:
    """Whether `after` must reach the journal before the shell acts on it.

    It must when it is about to act in a new state, has touched more of the
    machine, or holds a new check result or confirmation. It need not when the
    next step is `Proceed` (nothing is acted on), when only an idempotent step
    of Committing or RollingBack finished (a restart redoes it harmlessly), or
    when it is over (the shell archives it, then clears the journal).
    """
    if after.terminal or isinstance(next_effect(after), Proceed):
        return False
    return (
        after.state is not before.state
        or after.touched != before.touched
        or after.checks != before.checks
        or after.confirmed_at != before.confirmed_at
    )


def _recover(op: Operation, now: float) -> Operation:
    if op.terminal:
        return op
    op = _close_phase(op, Broke("the helper stopped during this step"), now)
    if op.state is State.PENDING:
        return _to(
            op,
            State.ROLLED_BACK,
            now,
            "the helper restarted before activation began; nothing was changed",
        )
    if op.state in (State.ACTIVATING, State.VERIFYING):
        return _to(
            op, State.ROLLING_BACK, now, f"the helper restarted during {op.state}; rolling back"
        )
    # Committing and RollingBack resume where they were; the step in flight is redone.
    at = iso(now)
    return _open_phase(
        replace(
            op,
            transitions=(
                *op.transitions,
                Transition(op.state, at, f"resumed {op.state} after a restart"),
            ),
        ),
        now,
    )


def _to(op: Operation, state: State, now: float, message: str = "") -> Operation:
    at = iso(now)
    op = replace(
        op,
        state=state,
        done=(),
        message=message or op.message,
        transitions=(*op.transitions, Transition(state, at, message)),
    )
    if state in TERMINAL:
        return replace(op, finished_at=at)
    return _open_phase(op, now)


def _open_phase(op: Operation, now: float) -> Operation:
    """Start the clock on the step that comes next (closed by `_close_phase`)."""
    effect = next_effect(op)
    if effect is None or isinstance(effect, Proceed):
        return op
    name = f"check:{effect.spec.name}" if isinstance(effect, RunCheck) else effect.step
    return replace(op, phases=(*op.phases, Phase(name, iso(now))))


def _close_phase(op: Operation, event: Event, now: float) -> Operation:
    if not op.phases or op.phases[-1].finished_at is not None:
        return op
    ok = (
        not isinstance(event, Broke)
        and not (isinstance(event, Checked) and not event.result.ok)
        and not (isinstance(event, WaitOver) and op.confirmed_at is None)
    )
    message = (
        event.message
        if isinstance(event, Broke | Done)
        else event.result.message
        if isinstance(event, Checked)
        else ""
    )
    last = replace(op.phases[-1], finished_at=iso(now), ok=ok, message=message)
    return replace(op, phases=(*op.phases[:-1], last))
