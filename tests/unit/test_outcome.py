"""What a pass reports for each action: phase, reason and a message that says what to do."""

from __future__ import annotations

import pytest

from reconciler.core import decide as d
from reconciler.core.activation import ActivationPlan
from reconciler.core.outcome import outcome_of

SHA = "0123456789abcdef" * 2 + "01234567"
INHIBITED = ActivationPlan("switch", "boot", "SwitchInhibited", "the switch inhibitors differ")

CASES = [
    ("converged", d.Converged(SHA), None, ("Ready", "Succeeded", "applied revision 0123456789ab")),
    (
        "converged, reboot due, policy never",
        d.Converged(SHA, reboot_required=True),
        None,
        ("Ready", "RebootRequired", "boot its kernel: reboot.policy is never: reboot by hand"),
    ),
    (
        "converged, reboot due in the window",
        d.Converged(SHA, reboot_required=True, reboot_window="02:00-04:00"),
        None,
        ("Ready", "RebootRequired", "in the next reboot window, 02:00-04:00 (local time)"),
    ),
    (
        "installed for the next boot",
        d.Converged(SHA),
        INHIBITED,
        ("Ready", "SwitchInhibited", "for the next boot: the switch inhibitors differ"),
    ),
    (
        "rebooting",
        d.Reboot(),
        None,
        ("Progressing", "Rebooting", "rebooting into the committed generation"),
    ),
    ("deploying", d.Deploy(SHA), None, ("Progressing", "Progressing", "deploying revision")),
    (
        "deploying as a boot",
        d.Deploy(SHA),
        INHIBITED,
        ("Progressing", "SwitchInhibited", "the switch inhibitors differ"),
    ),
    (
        "helper at work",
        d.WaitForHelper("op-1", "Verifying"),
        None,
        ("Progressing", "Progressing", "the helper is at Verifying in operation op-1"),
    ),
    (
        "build failed",
        d.Blocked(SHA, d.Failure("BuildFailed", "nix says no"), stalled=True),
        None,
        ("Stalled", "BuildFailed", "push a new commit, or run `pullnix retry`"),
    ),
    (
        "rolled back",
        d.Blocked(SHA, d.Failure("RolledBack", "check api failed"), stalled=False),
        None,
        ("Failing", "RolledBack", "is not tried again until a new commit"),
    ),
    (
        "suspended by the cli",
        d.Suspended("cli"),
        None,
        ("Suspended", "Suspended", "suspended by `pullnix suspend`"),
    ),
    (
        "drift reported",
        d.ReportDrift(SHA, "/nix/store/a", "/nix/store/b"),
        None,
        ("Failing", "Drifted", "set spec.driftPolicy: revert"),
    ),
]


@pytest.mark.parametrize(
    ("action", "activation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_outcome(
    action: d.Action, activation: ActivationPlan | None, expected: tuple[str, str, str]
) -> None:
    outcome = outcome_of(action, None, activation)
    phase, reason, words = expected
    assert (outcome.phase, outcome.reason) == (phase, reason)
    assert words in outcome.message


def test_a_rollback_with_no_news_from_the_helper_counts_as_unhealthy() -> None:
    blocked = d.Blocked(SHA, d.Failure("RolledBack", "x"), stalled=False)
    assert outcome_of(blocked, None).healthy is False
    assert outcome_of(blocked, True).healthy is True
    assert outcome_of(d.Converged(SHA), None).healthy is None
