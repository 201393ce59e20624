"""The helper's state machine as tables: events in, states and effects out; no fakes, no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.common.protocol import ApplyRequest, CheckSpec
from reconciler.helper import machine as m

A = "/nix/store/" + "a" * 32 + "-nixos-system-old"
P = A
NEW = "/nix/store/" + "n" * 32 + "-nixos-system-new"
OTHER = "/nix/store/" + "p" * 32 + "-nixos-system-profile"
CHECK = CheckSpec(name="api", kind="tcp", target=(("host", "127.0.0.1"), ("port", 1)))


def result(ok: bool) -> m.CheckResult:
    return m.CheckResult("api", "tcp", ok, "seen", 1, m.iso(1), m.iso(2))


BEFORE = m.Previous(A, P, 7)
UNTOUCHED = m.Touched()


def drive(
    request: ApplyRequest, events: list[m.Event], previous: m.Previous = BEFORE
) -> tuple[list[str], m.Operation]:
    """Feed `events` in order; the trace of 'State:step' before each, then the final op."""
    op = m.begin("op-1", "apply", request, previous, now=100.0)
    trace = []
    for i, event in enumerate(events):
        effect = m.next_effect(op)
        assert effect is not None, f"no effect left before event {i}: {trace}"
        trace.append(f"{op.state}:{describe(effect)}")
        op = m.advance(op, event, now=101.0 + i)
    assert m.next_effect(op) is None, f"not over: {op.state} {m.next_effect(op)}"
    return trace, op


def describe(effect: m.Effect) -> str:
    if isinstance(effect, m.Activate | m.Reactivate):
        return f"{effect.step}({effect.action} {effect.store_path[-3:]})"
    if isinstance(effect, m.SetProfile | m.RestoreProfile | m.InstallBoot | m.RestoreBoot):
        return f"{effect.step}({effect.store_path[-3:]})"
    return effect.step


ok = m.Done()
TRIAL = ApplyRequest(store_path=NEW, revision="r2")
SWITCH = replace(TRIAL, trial=False)

CASES = {
    "trial, no checks: test-activate, then commit": (
        TRIAL,
        [ok, ok, ok, m.Done(generation=8), ok, ok, ok],
        m.State.SUCCEEDED,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:set-profile(new)",
            "Committing:install-boot(new)",
            "Committing:record",
            "Committing:proceed",
        ],
    ),
    "trial activation fails: back to the old system with test, bootloader untouched": (
        TRIAL,
        [ok, m.Broke("exit 4"), ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "RollingBack:reactivate(test old)",
            "RollingBack:proceed",
        ],
    ),
    "non-trial switch fails: one switch of the old system restores both": (
        SWITCH,
        [ok, m.Broke("exit 4"), ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(switch new)",
            "RollingBack:reactivate(switch old)",
            "RollingBack:proceed",
        ],
    ),
    "non-trial boot fails: only the boot default goes back": (
        replace(SWITCH, action="boot"),
        [ok, m.Broke("no space"), ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(boot new)",
            "RollingBack:restore-boot(old)",
            "RollingBack:proceed",
        ],
    ),
    "a failed check rolls back": (
        replace(TRIAL, health_checks=(CHECK,)),
        [ok, ok, m.Checked(result(False)), ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:check",
            "RollingBack:reactivate(test old)",
            "RollingBack:proceed",
        ],
    ),
    "checks pass, confirm in time: committed": (
        replace(TRIAL, health_checks=(CHECK,), require_confirm=True),
        [
            ok,
            ok,
            m.Checked(result(True)),
            m.Confirmed(),
            m.WaitOver(),
            m.Done(generation=8),
            ok,
            ok,
            ok,
        ],
        m.State.SUCCEEDED,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:check",
            "Verifying:confirm",
            "Verifying:proceed",
            "Committing:set-profile(new)",
            "Committing:install-boot(new)",
            "Committing:record",
            "Committing:proceed",
        ],
    ),
    "no confirm before the deadline: rolled back (dead-man switch)": (
        replace(TRIAL, require_confirm=True),
        [ok, ok, m.WaitOver(), ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:confirm",
            "RollingBack:reactivate(test old)",
            "RollingBack:proceed",
        ],
    ),
    "a confirm before Verifying counts": (
        replace(TRIAL, require_confirm=True),
        [m.Confirmed(), ok, ok, ok, m.Done(generation=8), ok, ok, ok],
        m.State.SUCCEEDED,
        [
            "Pending:proceed",
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:set-profile(new)",
            "Committing:install-boot(new)",
            "Committing:record",
            "Committing:proceed",
        ],
    ),
    "boot install fails in the commit: profile restored, old system switched back": (
        TRIAL,
        [ok, ok, ok, m.Done(generation=8), m.Broke("bootloader"), ok, ok, ok],
        m.State.ROLLED_BACK,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:set-profile(new)",
            "Committing:install-boot(new)",
            "RollingBack:restore-profile(old)",
            "RollingBack:reactivate(switch old)",
            "RollingBack:proceed",
        ],
    ),
    "recording fails after the commit: Failed, loudly": (
        TRIAL,
        [ok, ok, ok, m.Done(generation=8), ok, m.Broke("disk full")],
        m.State.FAILED,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:set-profile(new)",
            "Committing:install-boot(new)",
            "Committing:record",
        ],
    ),
    "the old system fails to re-activate: Failed": (
        TRIAL,
        [ok, m.Broke("exit 4"), m.Broke("exit 4 again")],
        m.State.FAILED,
        ["Pending:proceed", "Activating:activate(test new)", "RollingBack:reactivate(test old)"],
    ),
    "non-trial test: activated until reboot, nothing committed": (
        replace(SWITCH, action="test"),
        [ok, ok, ok, ok],
        m.State.SUCCEEDED,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:proceed",
        ],
    ),
    "trial test: verified, still nothing committed (no profile, no boot default)": (
        replace(TRIAL, action="test"),
        [ok, ok, ok, ok],
        m.State.SUCCEEDED,
        [
            "Pending:proceed",
            "Activating:activate(test new)",
            "Verifying:proceed",
            "Committing:proceed",
        ],
    ),
}


@pytest.mark.parametrize(
    ("request_", "events", "final", "expected"), CASES.values(), ids=list(CASES)
)
def test_operation_follows_the_table(
    request_: ApplyRequest, events: list[m.Event], final: m.State, expected: list[str]
) -> None:
    trace, op = drive(request_, events)
    assert trace == expected
    assert op.state is final
    assert op.finished_at is not None
    assert next(t.state for t in op.transitions) is m.State.PENDING


def test_profile_differing_from_running_system_restores_each_its_own_way() -> None:
    trace, op = drive(SWITCH, [ok, m.Broke("exit 4"), ok, ok, ok], previous=m.Previous(A, OTHER, 7))
    assert trace[2:] == [
        "RollingBack:reactivate(test old)",
        "RollingBack:restore-boot(ile)",
        "RollingBack:proceed",
    ]
    assert op.state is m.State.ROLLED_BACK


def test_nothing_to_go_back_to_is_failed_not_rolled_back() -> None:
    trace, op = drive(TRIAL, [ok, m.Broke("exit 4"), ok], previous=m.Previous(None, None, None))
    assert trace[-1] == "RollingBack:proceed"
    assert op.state is m.State.FAILED
    assert "no running system before" in op.message


def test_rolled_back_message_names_the_cause() -> None:
    _, op = drive(
        replace(TRIAL, require_confirm=True, confirm_timeout=5), [ok, ok, m.WaitOver(), ok, ok]
    )
    assert "did not confirm within 5s" in op.message


def test_confirm_deadline_counts_from_verifying() -> None:
    op = m.begin("op", "apply", replace(TRIAL, confirm_timeout=30), m.Previous(A, P, 7), 0.0)
    op = m.advance(m.advance(op, ok, 10.0), ok, 20.0)
    assert op.state is m.State.VERIFYING
    assert op.confirm_deadline == 50.0


def test_phases_are_timed_for_spans() -> None:
    _, op = drive(
        replace(TRIAL, health_checks=(CHECK,)),
        [ok, ok, m.Checked(result(True)), ok, m.Done(generation=8), ok, ok, ok],
    )
    assert [(p.name, p.ok) for p in op.phases] == [
        ("activate", True),
        ("check:api", True),
        ("set-profile", True),
        ("install-boot", True),
        ("record", True),
    ]
    assert all(p.finished_at and p.started_at <= p.finished_at for p in op.phases)
    assert op.checks == (result(True),)
    assert op.generation == 8


def at(state: m.State, done: tuple[str, ...] = (), touched: m.Touched = UNTOUCHED) -> m.Operation:
    op = m.begin("op", "apply", TRIAL, m.Previous(A, P, 7), 0.0)
    return replace(op, state=state, done=done, touched=touched)


ALL = m.Touched(running=True, boot=True, profile=True)
RECOVERY = {
    "Pending: nothing was done, nothing to undo": (at(m.State.PENDING), m.State.ROLLED_BACK, None),
    "Activating: roll back": (
        at(m.State.ACTIVATING, touched=m.Touched(running=True)),
        m.State.ROLLING_BACK,
        "reactivate",
    ),
    "Verifying: roll back": (
        at(m.State.VERIFYING, touched=m.Touched(running=True)),
        m.State.ROLLING_BACK,
        "reactivate",
    ),
    "Committing: finish the commit from the step in flight": (
        at(m.State.COMMITTING, done=("set-profile",), touched=ALL),
        m.State.COMMITTING,
        "install-boot",
    ),
    "RollingBack: finish the rollback": (
        at(m.State.ROLLING_BACK, done=("restore-profile",), touched=ALL),
        m.State.ROLLING_BACK,
        "reactivate",
    ),
    "Succeeded: stays": (at(m.State.SUCCEEDED), m.State.SUCCEEDED, None),
}


@pytest.mark.parametrize(("op", "state", "step"), RECOVERY.values(), ids=list(RECOVERY))
def test_restart_recovers_to_a_safe_continuation(
    op: m.Operation, state: m.State, step: str | None
) -> None:
    recovered = m.advance(op, m.Restarted(), 5.0)
    assert recovered.state is state
    effect = m.next_effect(recovered)
    assert (effect.step if effect else None) == step


def test_confirm_after_the_end_changes_nothing() -> None:
    _, op = drive(TRIAL, [ok, ok, ok, m.Done(generation=8), ok, ok, ok])
    assert m.advance(op, m.Confirmed(), 999.0) is op


def test_journal_is_written_before_acting_and_skipped_for_idempotent_steps() -> None:
    two_checks = replace(SWITCH, health_checks=(CHECK, CHECK))
    op = m.begin("op", "apply", two_checks, BEFORE, 0.0)
    written = []
    for i, event in enumerate(
        [
            ok,
            ok,
            m.Checked(result(True)),
            m.Checked(result(True)),
            ok,
            m.Done(generation=8),
            ok,
            ok,
            ok,
        ]
    ):
        after = m.advance(op, event, float(i))
        written.append((str(after.state), after.done, m.needs_journal(op, after)))
        op = after
    assert written == [
        ("Activating", (), True),  # before activating
        ("Verifying", (), True),  # before the first check
        ("Verifying", (), True),  # the first check's result, before the second
        ("Verifying", (), False),  # next is Proceed: it goes out with Committing
        ("Committing", (), True),  # touched the profile, before moving it
        ("Committing", ("set-profile",), False),  # idempotent: a restart redoes it
        ("Committing", ("set-profile", "install-boot"), False),
        ("Committing", ("set-profile", "install-boot", "record"), False),  # next is Proceed
        ("Succeeded", (), False),  # archived by the shell, not journaled
    ]
