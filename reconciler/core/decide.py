"""The controller's decision: one pure function from what is wanted and what is seen to one action.

Owns the policy of a reconcile pass once the source and the spec have been
read: whether to confirm a new generation, wait for the helper, stay
suspended, refuse a revision that already failed, deploy, report or revert
drift, reboot, or do nothing. Level-triggered: the answer depends only on
its inputs, never on which trigger started the pass.

Must not: read, write, run or wait for anything. The shell gathers
`Observed` and `AgentRecord`, calls `decide`, and carries the action out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from reconciler.core.errors import FailureReason
from reconciler.core.lock import PREBUILT_REFUSALS
from reconciler.core.model import DeploymentSpec
from reconciler.core.waves import RolloutHalted, WaitForWave

#: Failures that a new try of the same commit cannot fix: only a new commit or `pullnix retry`.
_STALLING = frozenset({"BuildFailed", "GateRefused", *PREBUILT_REFUSALS})


@dataclass(frozen=True)
class HelperView:
    """What the helper is doing, as far as the decision needs to know."""

    busy: bool = False
    operation_id: str | None = None
    state: str | None = None  # the helper's state name: Activating, Verifying, ...
    store_path: str | None = None
    revision: str | None = None
    awaiting_confirm: bool = False
    confirmed: bool = False


@dataclass(frozen=True)
class Observed:
    """What this pass saw: the wanted revision and the machine as it is."""

    revision: str  # the commit to deploy (the branch tip, or the pin it carries)
    current_system: str | None  # the store path /run/current-system resolves to
    helper: HelperView = HelperView()
    reboot_needed: bool = False  # the booted kernel, initrd or modules differ from current
    local_time: tuple[int, int] = (12, 0)  # hour, minute; for the reboot window
    current_revision: str | None = None  # the commit recorded with the running system, if any


@dataclass(frozen=True)
class Failure:
    reason: FailureReason
    message: str = ""


@dataclass(frozen=True)
class AgentRecord:
    """The agent's own memory between passes (kept in its state dir)."""

    last_applied_revision: str | None = None
    last_applied_store_path: str | None = None
    failed: Mapping[str, Failure] = field(default_factory=lambda: MappingProxyType({}))
    retry_revision: str | None = None  # `pullnix retry` clears one failure for this commit
    suspended: bool = False  # `pullnix suspend`, on top of spec.suspend


# The actions. Each says what the shell must do next; none carries I/O.


@dataclass(frozen=True)
class Confirm:
    """This agent runs in the generation the helper is verifying: say it is alive."""

    operation_id: str
    revision: str | None


@dataclass(frozen=True)
class WaitForHelper:
    operation_id: str | None
    state: str | None


@dataclass(frozen=True)
class Suspended:
    by: Literal["spec", "cli"]


@dataclass(frozen=True)
class Blocked:
    """The revision failed before; it is not tried again until a new commit or a retry."""

    revision: str
    failure: Failure
    stalled: bool  # True for failures a retry of the same commit cannot fix


@dataclass(frozen=True)
class Deploy:
    """Build the revision, run the gates, and hand the result to the helper."""

    revision: str
    retry: bool = False  # a `pullnix retry` or `retryFailedRevision` of a failed commit


@dataclass(frozen=True)
class RevertDrift:
    """Someone changed the system by hand; put the last applied system back."""

    revision: str
    store_path: str
    found: str | None


@dataclass(frozen=True)
class ReportDrift:
    revision: str
    expected: str
    found: str | None


@dataclass(frozen=True)
class Reboot:
    """The new kernel, initrd or modules only take effect after a reboot, and now is allowed."""


@dataclass(frozen=True)
class Converged:
    revision: str
    reboot_required: bool = False  # needed but not allowed now (policy or window)
    reboot_window: str | None = None  # "HH:MM-HH:MM" when ifNeeded waits for its window


Action = (
    Confirm
    | WaitForHelper
    | Suspended
    | Blocked
    | Deploy
    | RevertDrift
    | ReportDrift
    | Reboot
    | Converged
    | WaitForWave  # a Deploy the wave gate holds back (core.waves)
    | RolloutHalted
)


def decide(spec: DeploymentSpec, observed: Observed, record: AgentRecord) -> Action:
    """The one action for this pass; see the module docstring for the order of concerns."""
    helper = observed.helper
    if helper.busy:
        # A suspended agent still confirms: silence would roll the machine back.
        if (
            helper.awaiting_confirm
            and not helper.confirmed
            and helper.operation_id
            and helper.store_path is not None
            and helper.store_path == observed.current_system
        ):
            return Confirm(helper.operation_id, helper.revision)
        return WaitForHelper(helper.operation_id, helper.state)
    if record.suspended:
        return Suspended("cli")
    if spec.suspend:
        return Suspended("spec")

    revision = observed.revision
    applied = _applied_revision(observed, record)
    if revision != applied:
        failure = record.failed.get(revision)
        if failure is None:
            return Deploy(revision)
        if record.retry_revision == revision or (
            failure.reason == "RolledBack" and spec.rollback.retry_failed_revision
        ):
            return Deploy(revision, retry=True)
        return Blocked(revision, failure, stalled=failure.reason in _STALLING)

    expected = record.last_applied_store_path
    if expected is not None and observed.current_system != expected:
        if spec.drift_policy == "revert":
            return RevertDrift(revision, expected, observed.current_system)
        return ReportDrift(revision, expected, observed.current_system)

    if observed.reboot_needed:
        if spec.reboot.policy == "ifNeeded" and _in_window(spec, observed.local_time):
            return Reboot()
        window = spec.reboot.window if spec.reboot.policy == "ifNeeded" else None
        span = f"{window.start}-{window.end}" if window else None
        return Converged(revision, reboot_required=True, reboot_window=span)
    return Converged(revision)


def _applied_revision(observed: Observed, record: AgentRecord) -> str | None:
    """The last applied commit: the agent's record, else what the running system records.

    The fallback lets an agent whose state dir was lost recognise a system it
    already deployed instead of rebuilding and re-activating it.
    """
    if record.last_applied_revision is not None:
        return record.last_applied_revision
    return observed.current_revision


def _in_window(spec: DeploymentSpec, local_time: tuple[int, int]) -> bool:
    window = spec.reboot.window
    return window is None or window.contains(*local_time)
