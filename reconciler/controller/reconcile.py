"""One reconcile pass, as a straight line: gather, decide, act, report.

Owns the order of a pass (docs/architecture.md, "One pass") and nothing else:

- `gather()` reads everything the pass needs into one frozen `PassInputs`:
  the record and the helper's finished operations folded into it, the
  source's verdict on the branch tip and the desired state (`desired.py`),
  the machine, the helper's view; a failure on the way is kept in it (`error`);
- `decide()` is `core.policy.decide_pass`: every policy of the pass is
  there and in `core.decide`;
- `act()` carries the action out (runs the post-deploy hooks of finished
  deploys, confirms, deploys, reverts drift) and says what it started;
- `report()` concludes (`core.policy.conclude`), writes the record and
  `status.json` once, puts the verdict on the trace and in the metrics, and
  returns the `PassResult` with the conditions it wrote and the exit code.

Must not: loop, sleep between passes or listen for triggers (that is the
agent's loop); decide anything itself (that is the core); activate a system
(that is the helper).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from reconciler.api.convert import deployment_to_data
from reconciler.common.answers import HelperStatus
from reconciler.common.client import HelperClient, HelperUnavailable
from reconciler.common.clock import utc_stamp
from reconciler.common.config import MachineConfig
from reconciler.common.operation import Operation
from reconciler.common.records import revision_of
from reconciler.controller.deploy import Deployer
from reconciler.controller.desired import DesiredState
from reconciler.controller.failed_pass import report_internal_error
from reconciler.controller.hooks import run_post_deploy
from reconciler.controller.status_doc import status_document
from reconciler.controller.store import StateStore, conditions_of
from reconciler.controller.waves import WaveGate
from reconciler.core import decide as d
from reconciler.core import policy
from reconciler.core.conditions import Condition
from reconciler.core.errors import PullnixError, TransientError
from reconciler.core.freshness import apply_freshness
from reconciler.core.history import HistoryEntry
from reconciler.core.model import NixOSDeployment
from reconciler.core.record import StoredRecord, fold
from reconciler.core.status import Outcome, apply_outcome, exit_code
from reconciler.nix.facts import read_inhibitors
from reconciler.nix.observe import SystemObservation, observe_system
from reconciler.source import AcceptedRevision, FetchResult, GitSource
from reconciler.telemetry.pass_report import report_operations, report_pass
from reconciler.telemetry.tracing import PassTrace, init_tracing, reconcile_span, step

log = logging.getLogger("pullnix.reconcile")


@dataclass(frozen=True)
class PassInputs:
    """Everything one pass read, frozen. Gathering stops at the first failure (`error`);
    what was read before it stays, so the record and history still take it in."""

    stored: StoredRecord  # the record, the helper's finished operations folded in
    previous: dict[str, Any]  # the status document of the last pass
    finished: tuple[Operation, ...] = ()  # the operations folded in by this pass
    entries: tuple[HistoryEntry, ...] = ()  # their history entries
    helper: HelperStatus | None = None
    fetch: FetchResult | None = None
    target: AcceptedRevision | None = None  # the source's verdict: the commit to deploy
    deployment: NixOSDeployment | None = None
    system: SystemObservation | None = None
    facts: policy.Facts | None = None  # what decide reads
    error: PullnixError | None = None


@dataclass(frozen=True)
class PassResult:
    action: d.Action | None
    outcome: Outcome
    exit_code: int
    trace_id: str
    operation_id: str | None = None
    error: bool = False  # the pass could not finish (as opposed to a verdict)
    conditions: tuple[Condition, ...] = ()  # as written to status.json
    settled: bool = True  # nothing is under way (core.policy.settled)
    again: bool = False  # the next pass is due at once (core.policy.decide_again)


class Reconciler:
    """Runs passes for one machine; holds the long-lived clients, no policy."""

    def __init__(
        self, machine: MachineConfig, *, on_build_line: Callable[[str], None] | None = None
    ) -> None:
        init_tracing(machine.host)  # idempotent; a no-op unless OTEL_* asks for an exporter
        self.machine = machine
        self.store = StateStore(machine.state_dir)
        self.source = GitSource(
            machine.source,
            machine.state_dir,
            helper_state_dir=machine.helper.state_dir,
            current_system=machine.system.current_system,
        )
        self.helper = HelperClient(machine.helper.socket)
        self.deployer = Deployer(
            machine, self.source, self.helper, on_build_line=on_build_line or _log_build_line
        )
        self.desired = DesiredState(machine, self.source)
        self.waves = WaveGate(machine)

    def run_pass(self) -> PassResult:
        """One pass under its root span `pullnix.reconcile` (its spans: docs/tracing.md)."""
        with reconcile_span(
            {"pullnix.host": self.machine.host, "vcs.ref.head.name": self.machine.source.branch}
        ) as trace:
            try:
                inputs = self.gather()
                decision = self.decide(inputs)
                acted = self.act(decision, inputs, trace.traceparent)
                return self.report(inputs, decision, acted, trace)
            except Exception as exc:  # not a PullnixError: reported all the same (issue 15)
                outcome = report_internal_error(self.store, self.machine.host, exc)
                trace.fail(f"{outcome.reason}: {outcome.message}")
                return PassResult(None, outcome, 1, trace.trace_id, error=True)

    # -- the four steps ----------------------------------------------------------------

    def gather(self) -> PassInputs:
        inputs = PassInputs(self.store.load_record(), self.store.load_status())
        try:
            inputs = self._fold(inputs, self._helper_status())
            inputs = self._read_source(inputs)
            return self._observe(inputs)
        except PullnixError as exc:
            return replace(inputs, error=exc)

    def decide(self, inputs: PassInputs) -> policy.Decision:
        decision = policy.decide_pass(inputs.stored, inputs.entries, inputs.facts, inputs.error)
        if inputs.deployment is not None and decision.action is not None:
            # A deploy waits for its wave: the gate is core.waves', the fleet Prometheus's.
            decision = replace(decision, action=self.waves.hold(inputs.deployment, decision.action))
        log.info("decided %s", type(decision.action).__name__)
        return decision

    def act(self, decision: policy.Decision, inputs: PassInputs, traceparent: str) -> policy.Acted:
        """Carry the action out; what it started, or the error that stopped it."""
        self._run_hooks(inputs, decision.entries)
        try:
            match decision.action:
                case d.Confirm(operation_id=op_id):
                    self.helper.confirm(operation_id=op_id)
                    return policy.Acted(op_id)
                case d.Deploy():
                    return self._deploy(inputs, traceparent)
                case d.Reboot():
                    assert inputs.system is not None
                    record = decision.stored.record
                    return policy.Acted(self.deployer.reboot(record, inputs.system, traceparent))
                case d.RevertDrift(revision=revision, store_path=store_path):
                    assert inputs.deployment is not None
                    spec = inputs.deployment.spec
                    op_id = self.deployer.apply_existing(spec, revision, store_path, traceparent)
                    return policy.Acted(op_id)
                case _:
                    return policy.Acted()
        except PullnixError as exc:
            return policy.Acted(error=exc)

    def report(
        self,
        inputs: PassInputs,
        decision: policy.Decision,
        acted: policy.Acted,
        trace: PassTrace,
    ) -> PassResult:
        """Write what the pass concluded, once; the result, with what was written."""
        verdict = policy.conclude(decision, acted)
        report_operations(trace, inputs.finished, inputs.entries)
        now = utc_stamp()
        generation = verdict.stored.generation
        conditions = apply_outcome(conditions_of(inputs.previous), verdict.outcome, now, generation)
        fresh = self.desired.freshness(_followed_tip(inputs))  # SourceStale: reported only
        if fresh:
            conditions = apply_freshness(conditions, fresh, now, generation)
        self.store.save_record(verdict.stored)
        written = status_document(
            self.machine.host,
            inputs.previous,
            verdict,
            conditions,
            decision.entries,
            deployment=inputs.deployment,
            fetch=inputs.fetch,
            system=inputs.system,
            now=now,
            helper_config=helper_config_error(inputs.helper, inputs.previous),
        )
        self.store.save_status(written)
        self.waves.report(written, verdict.stored.record.failed, decision.action)
        report_pass(
            trace,
            decision.action,
            inputs.target.target.sha if inputs.target else None,
            verdict.outcome,
            verdict.stored.record,
            inputs.system,
            decision.reboot,
            inputs.error or acted.error,
        )
        code = 1 if verdict.error else exit_code(conditions)
        return PassResult(
            decision.action,
            verdict.outcome,
            code,
            trace.trace_id,
            acted.operation_id,
            verdict.error,
            conditions,
            policy.settled(decision.action),
            policy.decide_again(acted),
        )

    # -- gathering ---------------------------------------------------------------------

    def _helper_status(self) -> HelperStatus:
        try:
            return self.helper.helper_status()
        except HelperUnavailable as exc:
            raise TransientError(
                f"the helper does not answer on {self.machine.helper.socket}: {exc}; is "
                "pullnix-helper.service running?",
                reason="HelperUnavailable",
            ) from None

    def _fold(self, inputs: PassInputs, helper: HelperStatus) -> PassInputs:
        """Take in the helper's finished operations this agent has not seen yet."""
        stored, finished, entries = fold(inputs.stored, helper.recent)
        return replace(inputs, stored=stored, finished=finished, entries=entries, helper=helper)

    def _read_source(self, inputs: PassInputs) -> PassInputs:
        """What the repository wants (`DesiredState.read`); the spec's generation."""
        desired = self.desired.read(inputs.stored)
        return replace(
            inputs,
            stored=_bump_generation(inputs.stored, desired.deployment),
            fetch=desired.fetch,
            target=desired.target,
            deployment=desired.deployment,
        )

    def _observe(self, inputs: PassInputs) -> PassInputs:
        """The machine as it is, and the facts `decide` reads."""
        assert inputs.target is not None
        assert inputs.deployment is not None
        assert inputs.helper is not None
        with step("system.observe") as span:
            system = observe_system(self.machine.system)
            span.set_attributes(
                {
                    "nix.store_path": system.current_system or "",
                    "nixos.generation": system.current_generation or 0,
                }
            )
        involved = policy.systems_involved(system.current_system, inputs.stored, inputs.finished)
        facts = policy.Facts(
            spec=inputs.deployment.spec,
            revision=inputs.target.target.sha,
            tip=inputs.target.tip.sha,
            current_system=system.current_system,
            profile_system=system.profile_system,
            current_revision=(
                revision_of(self.machine.helper.state_dir, system.current_system)
                if system.current_system
                else None
            ),
            boot_changed=self.deployer.reboot_needed(system),
            helper=inputs.helper,
            inhibitors={path: read_inhibitors(path) for path in involved},
            local_time=time.localtime()[3:5],
        )
        return replace(inputs, system=system, facts=facts)

    # -- acting ------------------------------------------------------------------------

    def _run_hooks(self, inputs: PassInputs, entries: tuple[HistoryEntry, ...]) -> None:
        """The post-deploy hook, once for each deploy that finished since the last pass;
        and the builds the helper is done with (or that nothing applies) are let go."""
        if inputs.helper is not None and (inputs.finished or not inputs.helper.busy):
            current = inputs.helper.operation
            self.deployer.release_roots(keep=current.request.store_path if current else None)
        hook = inputs.deployment.spec.hooks.post_deploy if inputs.deployment else None
        for entry in entries:
            if hook is not None and entry.kind == "apply":
                run_post_deploy(hook, entry)

    def _deploy(self, inputs: PassInputs, traceparent: str) -> policy.Acted:
        assert inputs.deployment is not None
        assert inputs.target is not None
        assert inputs.system is not None
        started = self.deployer.deploy(
            inputs.deployment.spec, inputs.target, inputs.system, traceparent
        )
        return policy.Acted(
            started.operation_id, started.plan, started.closure_diff, inputs.target.tip.sha
        )

    # -- reporting ---------------------------------------------------------------------


def helper_config_error(helper_status: HelperStatus | None, previous: dict[str, Any]) -> str | None:
    """status.helperConfigError: why the helper refused a changed agent.toml (it runs on the
    old one), else None; as it was when the helper did not answer this pass."""
    if helper_status is None:
        return (previous.get("status") or {}).get("helperConfigError")
    error = helper_status.config_error
    return error if isinstance(error, str) else None


def _followed_tip(inputs: PassInputs) -> str | None:
    """The branch tip this pass fetched, else the one the last pass did."""
    if inputs.fetch is not None:
        return inputs.fetch.tip_sha
    return (inputs.previous.get("status", {}).get("source") or {}).get("revision")


def _bump_generation(stored: StoredRecord, deployment: NixOSDeployment) -> StoredRecord:
    digest = hashlib.sha256(repr(deployment_to_data(deployment)).encode()).hexdigest()
    if digest == stored.spec_digest:
        return stored
    return replace(stored, spec_digest=digest, generation=stored.generation + 1)


def _log_build_line(line: str) -> None:
    log.info("nix: %s", line)
