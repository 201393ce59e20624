"""decide() as a table: each row is one situation a machine can be in, and its one action."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from reconciler.core.decide import (
    Action,
    AgentRecord,
    Blocked,
    Confirm,
    Converged,
    Deploy,
    Failure,
    HelperView,
    Observed,
    Reboot,
    ReportDrift,
    RevertDrift,
    Suspended,
    WaitForHelper,
    decide,
)
from reconciler.core.model import (
    Configuration,
    DeploymentSpec,
    RebootWindow,
    Rollback,
)
from reconciler.core.model import (
    Reboot as RebootSpec,
)

OLD, NEW = "a" * 40, "b" * 40
SYS_OLD, SYS_NEW, SYS_HAND = ("/nix/store/" + c * 32 + "-nixos-system" for c in "abc")

SPEC = DeploymentSpec(configuration=Configuration(flake="nixosConfigurations.{host}"))
CONVERGED = AgentRecord(last_applied_revision=OLD, last_applied_store_path=SYS_OLD)


def failed(rev: str, reason: str) -> AgentRecord:
    return replace(CONVERGED, failed=MappingProxyType({rev: Failure(reason, "why")}))  # type: ignore[arg-type]


def seen(rev: str = OLD, system: str | None = SYS_OLD, **kw: object) -> Observed:
    return Observed(revision=rev, current_system=system, **kw)  # type: ignore[arg-type]


VERIFYING_NEW = HelperView(
    busy=True,
    operation_id="op1",
    state="Verifying",
    store_path=SYS_NEW,
    revision=NEW,
    awaiting_confirm=True,
)
REBOOT_ALWAYS = replace(SPEC, reboot=RebootSpec(policy="ifNeeded"))
REBOOT_AT_NIGHT = replace(
    SPEC, reboot=RebootSpec(policy="ifNeeded", window=RebootWindow("02:00", "04:00"))
)

CASES: list[tuple[str, DeploymentSpec, Observed, AgentRecord, Action]] = [
    ("converged: nothing to do", SPEC, seen(), CONVERGED, Converged(OLD)),
    ("a new revision is deployed", SPEC, seen(NEW), CONVERGED, Deploy(NEW)),
    ("first pass ever deploys", SPEC, seen(NEW, None), AgentRecord(), Deploy(NEW)),
    (
        "state dir lost, the running system records this commit: converged, no rebuild",
        SPEC,
        seen(OLD, current_revision=OLD),
        AgentRecord(),
        Converged(OLD),
    ),
    (
        "state dir lost, the running system records an older commit: deploy",
        SPEC,
        seen(NEW, current_revision=OLD),
        AgentRecord(),
        Deploy(NEW),
    ),
    (
        "build failed for this revision: stalled until a new commit",
        SPEC,
        seen(NEW),
        failed(NEW, "BuildFailed"),
        Blocked(NEW, Failure("BuildFailed", "why"), stalled=True),
    ),
    (
        "a gate refused this revision: stalled",
        SPEC,
        seen(NEW),
        failed(NEW, "GateRefused"),
        Blocked(NEW, Failure("GateRefused", "why"), stalled=True),
    ),
    (
        "the failed revision is superseded by a newer commit: deploy it",
        SPEC,
        seen(NEW),
        failed("c" * 40, "BuildFailed"),
        Deploy(NEW),
    ),
    (
        "rolled back: not retried",
        SPEC,
        seen(NEW),
        failed(NEW, "RolledBack"),
        Blocked(NEW, Failure("RolledBack", "why"), stalled=False),
    ),
    (
        "rolled back, retryFailedRevision: retried",
        replace(SPEC, rollback=Rollback(retry_failed_revision=True)),
        seen(NEW),
        failed(NEW, "RolledBack"),
        Deploy(NEW, retry=True),
    ),
    (
        "build failed, retryFailedRevision does not apply to builds",
        replace(SPEC, rollback=Rollback(retry_failed_revision=True)),
        seen(NEW),
        failed(NEW, "BuildFailed"),
        Blocked(NEW, Failure("BuildFailed", "why"), stalled=True),
    ),
    (
        "pullnix retry clears the failure for that commit",
        SPEC,
        seen(NEW),
        replace(failed(NEW, "BuildFailed"), retry_revision=NEW),
        Deploy(NEW, retry=True),
    ),
    (
        "helper busy activating: wait",
        SPEC,
        seen(
            NEW, SYS_OLD, helper=replace(VERIFYING_NEW, state="Activating", awaiting_confirm=False)
        ),
        CONVERGED,
        WaitForHelper("op1", "Activating"),
    ),
    (
        "the new generation's agent is up while the helper waits: confirm",
        SPEC,
        seen(NEW, SYS_NEW, helper=VERIFYING_NEW),
        CONVERGED,
        Confirm("op1", NEW),
    ),
    (
        "the old generation's agent does not confirm the new one",
        SPEC,
        seen(NEW, SYS_OLD, helper=VERIFYING_NEW),
        CONVERGED,
        WaitForHelper("op1", "Verifying"),
    ),
    (
        "already confirmed: wait for the verdict",
        SPEC,
        seen(NEW, SYS_NEW, helper=replace(VERIFYING_NEW, confirmed=True)),
        CONVERGED,
        WaitForHelper("op1", "Verifying"),
    ),
    (
        "suspended agents still confirm, or the machine would roll back",
        replace(SPEC, suspend=True),
        seen(NEW, SYS_NEW, helper=VERIFYING_NEW),
        replace(CONVERGED, suspended=True),
        Confirm("op1", NEW),
    ),
    ("suspended in the spec", replace(SPEC, suspend=True), seen(NEW), CONVERGED, Suspended("spec")),
    (
        "suspended from the command line",
        SPEC,
        seen(NEW),
        replace(CONVERGED, suspended=True),
        Suspended("cli"),
    ),
    (
        "drift: someone ran nixos-rebuild by hand; reported",
        SPEC,
        seen(OLD, SYS_HAND),
        CONVERGED,
        ReportDrift(OLD, SYS_OLD, SYS_HAND),
    ),
    (
        "drift with driftPolicy revert: the applied system goes back",
        replace(SPEC, drift_policy="revert"),
        seen(OLD, SYS_HAND),
        CONVERGED,
        RevertDrift(OLD, SYS_OLD, SYS_HAND),
    ),
    (
        "a new commit wins over drift",
        replace(SPEC, drift_policy="revert"),
        seen(NEW, SYS_HAND),
        CONVERGED,
        Deploy(NEW),
    ),
    (
        "reboot needed, policy never: converged, reboot required",
        SPEC,
        seen(reboot_needed=True),
        CONVERGED,
        Converged(OLD, reboot_required=True),
    ),
    (
        "reboot needed, ifNeeded, no window: reboot",
        REBOOT_ALWAYS,
        seen(reboot_needed=True),
        CONVERGED,
        Reboot(),
    ),
    (
        "reboot needed, ifNeeded, inside the window: reboot",
        REBOOT_AT_NIGHT,
        seen(reboot_needed=True, local_time=(3, 15)),
        CONVERGED,
        Reboot(),
    ),
    (
        "reboot needed, ifNeeded, outside the window: wait for it",
        REBOOT_AT_NIGHT,
        seen(reboot_needed=True, local_time=(12, 0)),
        CONVERGED,
        Converged(OLD, reboot_required=True, reboot_window="02:00-04:00"),
    ),
    (
        "drift is dealt with before a reboot",
        REBOOT_ALWAYS,
        seen(OLD, SYS_HAND, reboot_needed=True),
        CONVERGED,
        ReportDrift(OLD, SYS_OLD, SYS_HAND),
    ),
]


@pytest.mark.parametrize(
    ("spec", "observed", "record", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(
    spec: DeploymentSpec, observed: Observed, record: AgentRecord, expected: Action
) -> None:
    assert decide(spec, observed, record) == expected
