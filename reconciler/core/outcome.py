"""What a pass reports for the action `decide` chose: phase, reason and a message to act on.

Owns the words of the status: the Kubernetes-style phase (Ready, Progressing,
Stalled, Failing, Suspended), the CamelCase reason, and a human message that
says what happened and what to do (push a new commit, `pullnix retry`,
spec.driftPolicy ...). Pure: a function of the action, the helper's last
verdict and the activation plan.

Must not: read the clock, the record or anything outside its arguments.
"""

from __future__ import annotations

from reconciler.core import decide as d
from reconciler.core.activation import ActivationPlan
from reconciler.core.status import Outcome
from reconciler.core.waves import RolloutHalted, WaitForWave


def outcome_of(  # noqa: C901, PLR0912 - one case per action, a table
    action: d.Action, healthy: bool | None, activation: ActivationPlan | None = None
) -> Outcome:
    """The status a pass reports for the action it took; `activation` is the plan of a deploy
    whose switch became a boot (or of a boot-only strategy), when there is one."""
    match action:
        case d.Converged(revision=r) if activation is not None:
            return Outcome(
                "Ready",
                activation.reason or "RebootRequired",
                f"applied revision {_short(r)} for the next boot: "
                + (
                    activation.message
                    if activation.changed
                    else "strategy.action is 'boot', so it takes effect at the next reboot"
                ),
                healthy,
            )
        case d.Deploy(revision=r) if activation is not None and activation.changed:
            return Outcome(
                "Progressing",
                activation.reason or "Progressing",
                f"deploying revision {_short(r)}: {activation.message}",
                healthy,
            )
        case d.Converged(revision=r, reboot_required=True, reboot_window=window):
            when = (
                f"the helper reboots in the next reboot window, {window} (local time)"
                if window
                else "reboot.policy is never: reboot by hand"
            )
            return Outcome(
                "Ready",
                "RebootRequired",
                f"applied revision {_short(r)}; a reboot is needed to boot its kernel: {when}",
                healthy,
            )
        case d.Converged(revision=r):
            return Outcome("Ready", "Succeeded", f"applied revision {_short(r)}", healthy)
        case d.Deploy(revision=r):
            return Outcome("Progressing", "Progressing", f"deploying revision {_short(r)}", healthy)
        case d.WaitForHelper(operation_id=op, state=state):
            return Outcome(
                "Progressing", "Progressing", f"the helper is at {state} in operation {op}", healthy
            )
        case d.Confirm(operation_id=op):
            return Outcome(
                "Progressing",
                "Progressing",
                f"confirmed operation {op}: this agent runs in the new generation",
                healthy,
            )
        case d.Blocked(revision=r, failure=f, stalled=True):
            return Outcome(
                "Stalled",
                f.reason,
                f"revision {_short(r)}: {f.message} (push a new commit, or run `pullnix retry`)",
                healthy,
            )
        case d.Blocked(revision=r, failure=f):
            return Outcome(
                "Failing",
                f.reason,
                f"revision {_short(r)} was rolled back: {f.message} (it is not tried "
                "again until a new commit, `pullnix retry`, or "
                "spec.rollback.retryFailedRevision)",
                False if f.reason == "RolledBack" and healthy is None else healthy,
            )
        case d.Suspended(by=by):
            return Outcome(
                "Suspended",
                "Suspended",
                "reconciliation is suspended by "
                + ("spec.suspend" if by == "spec" else "`pullnix suspend`"),
                healthy,
            )
        case d.ReportDrift(expected=e, found=f):
            return Outcome(
                "Failing",
                "Drifted",
                f"the running system is {f}, not the applied {e} (changed by hand?); "
                "set spec.driftPolicy: revert to put it back",
                healthy,
            )
        case d.RevertDrift(found=f):
            return Outcome(
                "Progressing", "Drifted", f"reverting the system changed by hand ({f})", healthy
            )
        case d.Reboot():
            return Outcome(
                "Progressing",
                "Rebooting",
                "rebooting into the committed generation (its kernel, initrd or modules "
                "are not the booted ones; reboot.window allows it now)",
                healthy,
            )
        case WaitForWave(message=message):
            return Outcome("Progressing", "WaitingForWave", message, healthy)
        case RolloutHalted(revision=r, wave=w, host=host, host_wave=hw, reason=why):
            return Outcome(
                "Stalled",
                "RolloutHalted",
                f"revision {_short(r)} is never deployed in wave {w}: {host} (wave {hw}) "
                f"reported {why} for it (push a new commit)",
                healthy,
            )
    raise AssertionError(f"no outcome for {action!r}")


def _short(sha: str) -> str:
    return sha[:12]
