"""decide() as a table: each row is one situation a machine can be in, and its one action."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from reconciler.common.answers import HelperStatus
from reconciler.common.operation import Operation, Previous, State
from reconciler.common.protocol import ApplyRequest
from reconciler.controller.gates import GateRefused
from reconciler.core import policy
from reconciler.core.activation import ActivationPlan
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
from reconciler.core.errors import PullnixError, TerminalError, TransientError
from reconciler.core.history import HistoryEntry
from reconciler.core.model import (
    Configuration,
    DeploymentSpec,
    RebootWindow,
    Rollback,
)
from reconciler.core.model import (
    Reboot as RebootSpec,
)
from reconciler.core.record import StoredRecord
from reconciler.nix.errors import BuildFailed, EvaluationError, NixStoreBusy

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


# -- the policy of a whole pass around the action (core.policy) ----------------------------


TIP = "d" * 40
INHIBITED = "nvidia-driver-575"


def boot_install(store_path: str = SYS_NEW, running: str | None = SYS_OLD) -> Operation:
    """A finished apply that installed `store_path` for the next boot, no trial."""
    return Operation(
        id="op-boot",
        kind="apply",
        request=ApplyRequest(store_path=store_path, revision=NEW, action="boot", trial=False),
        previous=Previous(running, None, None),
        state=State.SUCCEEDED,
        created_at="2026-11-25T18:31:39.566851Z",
        finished_at="2026-11-25T18:32:00.000000Z",
        message="committed",
    )


def entry(result: str = "Succeeded", kind: str = "apply", op_id: str = "op-boot") -> HistoryEntry:
    return HistoryEntry(op_id, NEW, SYS_NEW, 5, result, "t0", "t1", message="committed", kind=kind)


def facts(**changes: object) -> policy.Facts:
    base = policy.Facts(
        spec=SPEC,
        revision=OLD,
        tip=TIP,
        current_system=SYS_OLD,
        profile_system=SYS_OLD,
        current_revision=None,
        boot_changed=False,
        helper=HelperStatus(),
        inhibitors={},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


STORED = StoredRecord(record=CONVERGED)
STORED_NEW = StoredRecord(
    record=AgentRecord(last_applied_revision=NEW, last_applied_store_path=SYS_NEW)
)
INSTALLED_FOR_BOOT = facts(
    revision=NEW,
    profile_system=SYS_NEW,
    helper=HelperStatus(recent=(boot_install(),)),
    inhibitors={SYS_OLD: None, SYS_NEW: INHIBITED},
)

PASSES: list[tuple[str, StoredRecord, tuple[HistoryEntry, ...], policy.Facts, object]] = [
    ("converged, nothing new", STORED, (), facts(), Converged(OLD)),
    (
        "installed with boot, not rebooted yet: applied, a reboot is needed, not drift",
        STORED_NEW,
        (),
        INSTALLED_FOR_BOOT,
        Converged(NEW, reboot_required=True),
    ),
    (
        "the same, but the machine was switched by hand since: drift",
        STORED_NEW,
        (),
        replace(INSTALLED_FOR_BOOT, current_system=SYS_HAND),
        ReportDrift(NEW, SYS_NEW, SYS_HAND),
    ),
    (
        "the helper is verifying the generation this agent runs in: confirm",
        STORED,
        (),
        facts(
            revision=NEW,
            current_system=SYS_NEW,
            helper=HelperStatus(
                operation=replace(
                    boot_install(),
                    id="op1",
                    state=State.VERIFYING,
                    request=ApplyRequest(store_path=SYS_NEW, revision=NEW, require_confirm=True),
                )
            ),
        ),
        Confirm("op1", NEW),
    ),
    ("a new commit: deploy", STORED, (), facts(revision=NEW), Deploy(NEW)),
]


@pytest.mark.parametrize(
    ("why", "stored", "entries", "facts_", "action"), PASSES, ids=[p[0] for p in PASSES]
)
def test_a_pass_decides(
    why: str,
    stored: StoredRecord,
    entries: tuple[HistoryEntry, ...],
    facts_: policy.Facts,
    action: object,
) -> None:
    assert policy.decide_pass(stored, entries, facts_).action == action, why


def test_waiting_for_a_reboot_carries_the_plan_that_says_why() -> None:
    decision = policy.decide_pass(STORED_NEW, (), INSTALLED_FOR_BOOT)
    assert decision.reboot is True
    assert decision.activation == ActivationPlan(
        "switch",
        "boot",
        "SwitchInhibited",
        decision.activation.message if decision.activation else "",
    )
    verdict = policy.conclude(decision, policy.Acted())
    assert (verdict.outcome.phase, verdict.outcome.reason) == ("Ready", "SwitchInhibited")


def test_a_finished_boot_install_says_in_history_that_the_inhibitors_made_it_one() -> None:
    decision = policy.decide_pass(STORED_NEW, (entry(),), INSTALLED_FOR_BOOT)
    (explained,) = decision.entries
    assert explained.message.startswith("SwitchInhibited: ")
    assert explained.message.endswith("; committed")
    plain = policy.decide_pass(STORED_NEW, (entry(),), replace(INSTALLED_FOR_BOOT, inhibitors={}))
    assert plain.entries == (entry(),)


@pytest.mark.parametrize(
    ("entries", "healthy"),
    [
        ((), None),
        ((entry("Succeeded"),), True),
        ((entry("RolledBack"),), False),
        ((entry("Succeeded"), entry("Failed", op_id="op-2")), False),
        ((entry("Failed"), entry("Succeeded", op_id="op-2")), True),
        ((entry("Succeeded", kind="rollback"),), None),
    ],
)
def test_the_health_verdict_is_the_newest_finished_deploys(
    entries: tuple[HistoryEntry, ...], healthy: bool | None
) -> None:
    assert policy.decide_pass(STORED, entries, facts()).healthy is healthy


def test_converging_on_a_pinned_commit_remembers_the_tip_that_carried_it() -> None:
    decision = policy.decide_pass(STORED, (), facts())
    assert decision.stored.applied_source == TIP
    assert policy.decide_pass(STORED, (), facts(revision=NEW)).stored.applied_source is None


def deployed(error: PullnixError | None = None, retry: str | None = None) -> policy.Verdict:
    stored = replace(STORED, record=replace(CONVERGED, retry_revision=retry))
    decision = policy.decide_pass(stored, (), facts(revision=NEW))
    if error is not None:
        error.revision = NEW
    plan = ActivationPlan("switch", "switch")
    return policy.conclude(decision, policy.Acted("op-9", plan, "diff", TIP, error))


def test_a_started_deploy_is_attempted_and_remembers_its_diff_and_tip() -> None:
    verdict = deployed()
    assert verdict.attempted == NEW
    assert verdict.outcome.phase == "Progressing"
    assert verdict.stored.closure_diffs["op-9"] == "diff"
    assert verdict.stored.deploy_sources["op-9"] == TIP
    assert verdict.error is False


STICKY: list[tuple[PullnixError, str, str | None, bool]] = [
    # (the error, the phase, the failure remembered for the commit, the pass failed)
    (BuildFailed("boom"), "Stalled", "BuildFailed", False),
    (EvaluationError("bad nix"), "Stalled", "BuildFailed", False),
    (GateRefused("vulnix"), "Stalled", "GateRefused", False),
    (TerminalError("no such branch", reason="BranchMissing"), "Stalled", None, False),
    (NixStoreBusy("locked"), "Failing", None, True),
    (TransientError("unreachable", reason="SourceUnavailable"), "Failing", None, True),
]


@pytest.mark.parametrize(("error", "phase", "remembered", "pass_failed"), STICKY)
def test_failures_of_a_commit_stick_to_it_others_do_not(
    error: PullnixError, phase: str, remembered: str | None, pass_failed: bool
) -> None:
    verdict = deployed(error, retry=NEW)
    assert verdict.outcome.phase == phase
    assert verdict.outcome.reason == error.reason
    assert verdict.error is pass_failed
    assert verdict.attempted is None
    failure = verdict.stored.record.failed.get(NEW)
    assert (failure.reason if failure else None) == remembered
    # A `pullnix retry` of the commit is used up by a failure that sticks, kept otherwise.
    assert verdict.stored.record.retry_revision == (None if remembered else NEW)


def test_a_failure_before_the_decision_is_the_verdict_and_nothing_is_acted_on() -> None:
    error = TransientError("the helper does not answer", reason="HelperUnavailable")
    decision = policy.decide_pass(STORED, (entry("RolledBack"),), None, error)
    assert decision.action is None
    verdict = policy.conclude(decision, policy.Acted())
    assert (verdict.outcome.phase, verdict.outcome.reason) == ("Failing", "HelperUnavailable")
    assert verdict.outcome.healthy is False  # the news from the helper is still reported
    assert verdict.error is True


@pytest.mark.parametrize(
    ("action", "settled"),
    [
        (None, True),
        (Converged(OLD), True),
        (Blocked(NEW, Failure("BuildFailed"), stalled=True), True),
        (Suspended("cli"), True),
        (ReportDrift(OLD, SYS_OLD, SYS_HAND), True),
        (Reboot(), True),
        (Deploy(NEW), False),
        (Confirm("op1", NEW), False),
        (WaitForHelper("op1", "Verifying"), False),
        (RevertDrift(OLD, SYS_OLD, SYS_HAND), False),
    ],
)
def test_what_counts_as_settled(action: Action | None, settled: bool) -> None:
    assert policy.settled(action) is settled


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (None, False),  # the deploy was handed to the helper: follow the helper
        (BuildFailed("boom"), True),  # nothing was started: decide on the failure at once
        (NixStoreBusy("locked"), False),  # failed: retried after a backoff instead
    ],
)
def test_a_deploy_that_failed_for_good_is_decided_again_at_once(
    error: PullnixError | None, again: bool
) -> None:
    assert policy.settled(Deploy(NEW)) is False
    assert policy.decide_again(policy.Acted("op-9", error=error)) is again
