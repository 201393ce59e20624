"""How a requested activation is carried out, given facts about the new system: pure policy.

Owns three rules. First, switch inhibitors: when the `switch-inhibitors`
file of the running system and of the new system differ (present in either),
NixOS refuses to activate the new system live, so a requested `switch` or
`test` becomes `boot` (the new system takes effect at the next reboot) and
the result says so with the reason `SwitchInhibited`. Any boot, asked for
or forced, is applied without a live trial (that would activate now, or be
the refused activation), without health checks (they would check the old
system, still running) and without waiting for a confirmation (no agent runs
in the new system before the reboot). Second, reboot facts: which boot components (kernel, initrd,
kernel-modules) differ from the booted system. Third, a system installed
with `boot` and not yet booted is not drift: it waits for a reboot
(`installed_for_next_boot`). Takes values, returns values; reading the files
is the shell's job (`reconciler.nix.facts`). Must not: touch the file system
or run anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.common.operation import Operation, State
from reconciler.common.protocol import ACTIONS

BOOT_COMPONENTS = ("kernel", "initrd", "kernel-modules")


@dataclass(frozen=True)
class ActivationPlan:
    """The action to run and, when it differs from the request, why."""

    requested: str
    action: str
    reason: str | None = None
    message: str = ""

    @property
    def changed(self) -> bool:
        return self.action != self.requested

    @property
    def live(self) -> bool:
        """Does the new system run before the next reboot? Not for a boot."""
        return self.action != "boot"

    def helper_request(self, trial: bool, require_confirm: bool) -> tuple[bool, bool]:
        """(trial, requireConfirm) for the helper: neither for a boot, asked for or forced by
        inhibitors - nothing is activated before the reboot, so a live trial would activate
        what was not asked for now, and no agent runs in the new system to confirm it. (Nor
        are health checks sent: they would check the old system, still running.)"""
        if not self.live:
            return False, False
        return trial, require_confirm


def normalise_inhibitors(text: str | None) -> tuple[str, ...] | None:
    """A switch-inhibitors file's content as its non-empty stripped lines; None when absent."""
    if text is None:
        return None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def plan_activation(
    requested: str, running_inhibitors: str | None, new_inhibitors: str | None
) -> ActivationPlan:
    """Turn a requested action into the one to run, given both systems' switch-inhibitors."""
    if requested not in ACTIONS:
        raise ValueError(f"unknown activation action {requested!r} (one of {', '.join(ACTIONS)})")
    old, new = normalise_inhibitors(running_inhibitors), normalise_inhibitors(new_inhibitors)
    if requested == "boot" or old == new:
        return ActivationPlan(requested=requested, action=requested)
    return ActivationPlan(
        requested=requested,
        action="boot",
        reason="SwitchInhibited",
        message=(
            f"the switch inhibitors differ (running: {_show(old)}; new: {_show(new)}), so the new "
            f"system cannot be activated live; {requested!r} became 'boot': it takes effect at "
            "the next reboot"
        ),
    )


def boot_components_changed(
    booted: Mapping[str, str | None], new: Mapping[str, str | None]
) -> tuple[str, ...]:
    """The boot components whose resolved store paths differ between booted and new system.

    A component absent from both is unchanged; absent from one only is a change.
    """
    return tuple(c for c in BOOT_COMPONENTS if booted.get(c) != new.get(c))


def installed_for_next_boot(
    last_operation: Operation | None,
    *,
    applied: str | None,
    profile: str | None,
    running: str | None,
) -> bool:
    """Whether the last applied system waits for a reboot rather than having drifted away.

    True when the helper's newest finished operation applied `applied` with
    `boot` and no trial (nothing activated live), the profile still points at
    it, and the machine still runs what it ran before that operation: nothing
    was changed by hand since.
    """
    if last_operation is None or applied is None or running is None or running == applied:
        return False
    request = last_operation.request
    return (
        last_operation.kind == "apply"
        and last_operation.state == State.SUCCEEDED
        and request.action == "boot"
        and not request.trial
        and request.store_path == applied
        and profile == applied
        and last_operation.previous.current_system == running
    )


def _show(inhibitors: tuple[str, ...] | None) -> str:
    if inhibitors is None:
        return "none"
    return ", ".join(inhibitors) or "empty"
