"""The policy of one pass around its action: what the facts mean, and what the pass ends in.

Owns every decision of a pass that is not the action itself (that is
`decide.decide`, called from here):

- the helper's verdict on the deploys that finished since the last pass
  (`Healthy`), and why a finished deploy installed its system for the next
  boot (its switch inhibitors differ);
- waiting for a reboot: a system installed with `boot` and not booted yet is
  applied, not drift, and a reboot is needed;
- what the action and the act's result mean: the outcome, the revision
  attempted, the record after it;
- failures: a TerminalError stalls the object, and a CommitFailure sticks to
  its commit so `decide` does not try it again; a TransientError makes the
  pass fail, to be retried after a backoff;
- what counts as settled: nothing is under way, so `reconcile --once` and
  `reconcile --now --wait` may stop.

Pure: facts in, values out. Must not: read, run or write anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from reconciler.common.answers import HelperStatus
from reconciler.common.operation import Operation
from reconciler.core import decide as d
from reconciler.core import waves
from reconciler.core.activation import ActivationPlan, installed_for_next_boot, plan_activation
from reconciler.core.errors import CommitFailure, PullnixError, TerminalError
from reconciler.core.helper_terms import apply_request_view
from reconciler.core.history import HistoryEntry
from reconciler.core.model import DeploymentSpec
from reconciler.core.outcome import outcome_of
from reconciler.core.record import StoredRecord
from reconciler.core.status import Outcome

#: Actions after which the pass has nothing left to wait for.
SETTLED = (
    d.Converged,
    d.Blocked,
    d.Suspended,
    d.ReportDrift,
    d.Reboot,
    waves.WaitForWave,
    waves.RolloutHalted,
)


@dataclass(frozen=True)
class Facts:
    """What a pass found, as plain values: the wanted commit, the machine, the helper."""

    spec: DeploymentSpec
    revision: str  # the commit to deploy (the branch tip, or the pin it carries)
    tip: str  # the branch tip whose desired state asked for it
    current_system: str | None
    profile_system: str | None
    current_revision: str | None  # the commit recorded with the running system
    boot_changed: bool  # the booted kernel, initrd or modules differ from the current ones
    helper: HelperStatus
    inhibitors: Mapping[str, str | None]  # switch-inhibitors file of each system involved
    local_time: tuple[int, int] = (12, 0)


@dataclass(frozen=True)
class Verdict:
    """What a pass ended in: the status outcome, the record to keep, the revision it
    attempted, and whether it could not finish (retried after a backoff)."""

    outcome: Outcome
    stored: StoredRecord
    attempted: str | None = None
    error: bool = False


@dataclass(frozen=True)
class Decision:
    """The action, and everything the pass concluded before carrying it out. `action` is
    None when the inputs could not be gathered: then `verdict` says why."""

    stored: StoredRecord
    entries: tuple[HistoryEntry, ...]
    healthy: bool | None
    action: d.Action | None = None
    activation: ActivationPlan | None = None  # installed with `boot`, waiting for a reboot
    reboot: bool | None = None
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Acted:
    """What carrying the action out started: the helper's operation, and for a deploy the
    activation plan, the closure diff and the branch tip it deploys for; or the error."""

    operation_id: str | None = None
    plan: ActivationPlan | None = None
    closure_diff: str | None = None
    source: str | None = None
    error: PullnixError | None = None


def settled(action: d.Action | None) -> bool:
    """Nothing is under way: a `--once` run may stop here."""
    return action is None or isinstance(action, SETTLED)


def decide_again(acted: Acted) -> bool:
    """The action failed for good before anything started (a failed build): the next pass,
    at once, decides on the failure now remembered for the commit (Blocked, settled)."""
    return isinstance(acted.error, TerminalError)


def decide_pass(
    stored: StoredRecord,
    entries: Sequence[HistoryEntry],
    facts: Facts | None,
    error: PullnixError | None = None,
) -> Decision:
    """The decision of one pass over what it gathered; `error` stopped the gathering."""
    healthy = health_verdict(entries)
    if facts is None or error is not None:
        assert error is not None, "no facts and no error: nothing was gathered"
        return Decision(stored, tuple(entries), healthy, verdict=failed(stored, healthy, error))
    requested = facts.spec.strategy.action
    activation = waiting_for_reboot(facts, stored)
    observed = d.Observed(
        revision=facts.revision,
        current_system=(
            stored.record.last_applied_store_path if activation else facts.current_system
        ),
        helper=apply_request_view(facts.helper.operation)
        if facts.helper.operation
        else d.HelperView(),
        reboot_needed=facts.boot_changed or activation is not None,
        local_time=facts.local_time,
        current_revision=facts.current_revision,
    )
    action = d.decide(facts.spec, observed, stored.record)
    if isinstance(action, d.Converged):
        stored = stored.converged(facts.revision, facts.tip)
    return Decision(
        stored,
        explain_boots(entries, facts.helper, facts.inhibitors, requested),
        healthy,
        action,
        activation,
        observed.reboot_needed,
    )


def conclude(decision: Decision, acted: Acted) -> Verdict:
    """What the pass ends in, once the action was carried out (or failed)."""
    if decision.verdict is not None:
        return decision.verdict
    action, stored = decision.action, decision.stored
    assert action is not None
    if acted.error is not None:
        return failed(stored, decision.healthy, acted.error)
    if acted.operation_id is not None and acted.source is not None:
        stored = stored.deploying(acted.operation_id, acted.source, acted.closure_diff)
    attempted = action.revision if isinstance(action, d.Deploy | d.RevertDrift) else None
    outcome = outcome_of(action, decision.healthy, acted.plan or decision.activation)
    return Verdict(outcome, stored, attempted)


def failed(stored: StoredRecord, healthy: bool | None, error: PullnixError) -> Verdict:
    """A terminal error stalls (a failure of a commit is remembered for it); a transient
    one fails the pass."""
    if isinstance(error, TerminalError):
        outcome = Outcome("Stalled", error.reason, error.message, healthy)
        return Verdict(outcome, remember_failure(stored, error))
    return Verdict(Outcome("Failing", error.reason, error.message, healthy), stored, error=True)


def remember_failure(stored: StoredRecord, error: TerminalError) -> StoredRecord:
    """A build or gate failure is tied to its commit, so `decide` does not rebuild it; a
    retry asked for that commit is used up."""
    revision = error.revision
    if not isinstance(error, CommitFailure) or not revision:
        return stored
    record = stored.record
    failed_ = MappingProxyType({**record.failed, revision: d.Failure(error.failure, error.message)})
    retry = None if record.retry_revision == revision else record.retry_revision
    return replace(stored, record=replace(record, failed=failed_, retry_revision=retry))


def health_verdict(entries: Sequence[HistoryEntry]) -> bool | None:
    """The helper's verdict on the newest deploy that finished, if one did."""
    applied = [e for e in entries if e.kind == "apply"]
    if not applied:
        return None
    return applied[-1].result == "Succeeded"


def waiting_for_reboot(facts: Facts, stored: StoredRecord) -> ActivationPlan | None:
    """How the last applied system was activated, if it was installed with `boot` and
    waits for a reboot (not drift); None otherwise."""
    applied = stored.record.last_applied_store_path
    if not installed_for_next_boot(
        facts.helper.last,
        applied=applied,
        profile=facts.profile_system,
        running=facts.current_system,
    ):
        return None
    return plan_activation(
        facts.spec.strategy.action,
        _inhibitors(facts.inhibitors, facts.current_system),
        _inhibitors(facts.inhibitors, applied),
    )


def explain_boots(
    entries: Sequence[HistoryEntry],
    helper: HelperStatus,
    inhibitors: Mapping[str, str | None],
    requested: str,
) -> tuple[HistoryEntry, ...]:
    """The entries, those of operations that installed a system with `boot` because the
    switch inhibitors differ saying so."""
    ops = {op.id: op for op in helper.recent}
    out = []
    for entry in entries:
        op = ops.get(entry.operation_id)
        explained = entry
        if (
            op is not None
            and entry.result == "Succeeded"
            and op.request.action == "boot"
            and not op.request.trial
        ):
            plan = plan_activation(
                requested,
                _inhibitors(inhibitors, op.previous.current_system),
                _inhibitors(inhibitors, entry.store_path),
            )
            if plan.changed:
                message = f"{plan.reason}: {plan.message}; {entry.message}"
                explained = replace(entry, message=message)
        out.append(explained)
    return tuple(out)


def systems_involved(
    current_system: str | None,
    stored: StoredRecord,
    finished: Sequence[Operation],
) -> frozenset[str]:
    """The systems whose switch-inhibitors the policy may read: what runs, what was
    applied last, and what each finished operation ran before and installed."""
    paths = {current_system, stored.record.last_applied_store_path}
    for op in finished:
        paths |= {op.previous.current_system, op.request.store_path}
    return frozenset(p for p in paths if p)


def _inhibitors(inhibitors: Mapping[str, str | None], system: str | None) -> str | None:
    return inhibitors.get(system) if system else None
