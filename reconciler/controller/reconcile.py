"""One reconcile pass: source, spec, observe, decide, act, report.

Owns the order of a pass (docs/design.md, "One pass") and nothing else:
each step is a call into a layer below, the decision is `core.decide`, the
status is `core.status`. Errors are sorted by type, not by message: a
TransientError leaves the object Failing and is retried after a backoff; a
TerminalError makes it Stalled until an input changes.

Must not: loop, sleep between passes or listen for triggers (that is the
agent's loop); activate a system (that is the helper).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from reconciler.api import for_host, load_spec_text
from reconciler.api.convert import deployment_to_data
from reconciler.common.answers import HelperStatus
from reconciler.common.client import HelperClient, HelperUnavailable
from reconciler.common.clock import utc_stamp
from reconciler.common.config import MachineConfig
from reconciler.common.records import revision_of
from reconciler.controller.deploy import Deployer
from reconciler.controller.failed_pass import report_internal_error
from reconciler.controller.hooks import run_post_deploy
from reconciler.controller.store import StateStore, StoredRecord, conditions_of, history_of
from reconciler.controller.waves import WaveGate
from reconciler.core import decide as d
from reconciler.core import waves
from reconciler.core.activation import ActivationPlan
from reconciler.core.errors import CommitFailure, PullnixError, TerminalError, TransientError
from reconciler.core.freshness import Freshness, apply_freshness, freshness
from reconciler.core.helper_terms import apply_request_view
from reconciler.core.history import HistoryEntry, append_history, entry_from_operation, ingest
from reconciler.core.model import NixOSDeployment
from reconciler.core.outcome import outcome_of
from reconciler.core.status import Outcome, apply_outcome, exit_code
from reconciler.nix.observe import SystemObservation, observe_system
from reconciler.source import FetchResult, GitSource
from reconciler.telemetry import metrics
from reconciler.telemetry.helper_spans import emit_operation
from reconciler.telemetry.tracing import PassTrace, init_tracing, reconcile_span, step

log = logging.getLogger("pullnix.reconcile")

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
class PassResult:
    action: d.Action | None
    outcome: Outcome
    exit_code: int
    trace_id: str
    operation_id: str | None = None
    error: bool = False  # the pass could not finish (as opposed to a verdict)

    @property
    def settled(self) -> bool:
        """Nothing is under way: a `--once` run may stop here."""
        return self.action is None or isinstance(self.action, SETTLED)


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
        self._spec: tuple[bytes, NixOSDeployment] | None = None  # (sha256 of the text, it)
        self.waves = WaveGate(machine)

    def run_pass(self) -> PassResult:
        """One pass under its root span `pullnix.reconcile` (its spans: docs/design.md,
        "Metrics and traces")."""
        with reconcile_span(
            {"pullnix.host": self.machine.host, "vcs.ref.head.name": self.machine.source.branch}
        ) as pass_trace:
            try:
                return self._run_pass(pass_trace)
            except Exception as exc:  # not a PullnixError: reported all the same (issue 15)
                outcome = report_internal_error(self.store, self.machine.host, exc)
                pass_trace.fail(f"{outcome.reason}: {outcome.message}")
                return PassResult(None, outcome, 1, pass_trace.trace_id, error=True)

    def _run_pass(self, pass_trace: PassTrace) -> PassResult:
        traceparent = pass_trace.traceparent
        stored = self.store.load_record()
        status_doc = self.store.load_status()
        deployment: NixOSDeployment | None = None
        fetch: FetchResult | None = None
        system: SystemObservation | None = None
        action: d.Action | None = None
        op_id: str | None = None
        healthy: bool | None = None
        new_entries: list[HistoryEntry] = []
        attempted: str | None = None
        reboot: bool | None = None
        activation: ActivationPlan | None = None  # a switch turned into a boot, or waiting for one
        helper_status: HelperStatus | None = None
        error = False
        try:
            helper_status = self._helper_status()
            stored, new_entries = self._ingest(stored, helper_status, pass_trace)
            healthy = _verdict(new_entries)
            fetch = self._fetch()
            with step("source.verify", {"vcs.ref.head.revision": fetch.tip_sha}) as span:
                tip = self.source.accept_tip(
                    fetch.tip_sha,
                    stored.record.last_applied_revision,
                    applied_source=stored.applied_source,
                    pin_of=self._pin_of,
                )
                span.set_attribute("pullnix.signer", tip.signer or "")
            spec_path = self.machine.source.spec_path
            with step(
                "spec.load", {"pullnix.spec.path": spec_path, "vcs.ref.head.revision": tip.sha}
            ) as span:
                deployment = self._load_spec(
                    self.source.read_file(tip.sha, spec_path), f"{spec_path}@{tip.sha[:12]}"
                )
                target = self.source.accept_pin(tip, deployment.spec.revision)
                span.set_attribute("pullnix.spec.target", target.target.sha)
            stored = _bump_generation(stored, deployment)
            requested = deployment.spec.strategy.action
            new_entries = self.deployer.explain_boots(new_entries, helper_status, requested)
            self._run_hooks(deployment, new_entries)
            with step("system.observe") as span:
                system = observe_system(self.machine.system)
                reboot = self.deployer.reboot_needed(system)
                # Installed with `boot` and not booted yet: applied, and a reboot is needed.
                activation = self.deployer.waiting_for_reboot(
                    helper_status, stored.record, system, requested
                )
                reboot = reboot or activation is not None
                observed = d.Observed(
                    revision=target.target.sha,
                    current_system=(
                        stored.record.last_applied_store_path
                        if activation
                        else system.current_system
                    ),
                    helper=_helper_view(helper_status),
                    reboot_needed=reboot,
                    local_time=time.localtime()[3:5],
                    current_revision=(
                        revision_of(self.machine.helper.state_dir, system.current_system)
                        if system.current_system
                        else None
                    ),
                )
                span.set_attributes(
                    {
                        "nix.store_path": system.current_system or "",
                        "nixos.generation": system.current_generation or 0,
                    }
                )
            action = d.decide(deployment.spec, observed, stored.record)
            action = self.waves.hold(deployment, action)  # a deploy waits for its wave
            if isinstance(action, d.Converged):
                stored = stored.converged(target.target.sha, tip.sha)
            pass_trace.set(
                {
                    "pullnix.action": type(action).__name__,
                    "pullnix.revision": target.target.sha,
                    "vcs.ref.head.revision": target.target.sha,
                }
            )
            log.info("decided %s", type(action).__name__)
            stored, op_id, started = self._act(
                action, deployment, target, system, stored, traceparent
            )
            if isinstance(action, d.Deploy | d.RevertDrift):
                attempted = action.revision
            outcome = outcome_of(action, healthy, started or activation)
        except TerminalError as exc:
            outcome = Outcome("Stalled", exc.reason, exc.message, healthy)
            stored = self._remember_failure(stored, exc)
            log.warning("stalled: %s: %s", exc.reason, exc.message)
        except TransientError as exc:  # retried after a backoff
            outcome = Outcome("Failing", exc.reason, exc.message, healthy)
            error = True
            log.warning("pass failed: %s: %s", exc.reason, exc.message)
        self.store.save_record(stored)
        self._write_status(
            status_doc,
            stored,
            deployment,
            fetch,
            system,
            outcome,
            new_entries,
            attempted,
            helper_config_error(helper_status, status_doc),
        )
        written = self.store.load_status()
        code = 1 if error else exit_code(conditions_of(written))
        self.waves.report(written, stored.record.failed, action)
        _report(pass_trace, outcome, stored, system, reboot)
        return PassResult(action, outcome, code, pass_trace.trace_id, op_id, error)

    # -- steps ---------------------------------------------------------------

    def _helper_status(self) -> HelperStatus:
        try:
            return self.helper.helper_status()
        except HelperUnavailable as exc:
            raise TransientError(
                f"the helper does not answer on {self.machine.helper.socket}: {exc}; is "
                "pullnix-helper.service running?",
                reason="HelperUnavailable",
            ) from None

    def _fetch(self) -> FetchResult:
        with step("source.fetch", {"vcs.ref.head.name": self.machine.source.branch}) as span:
            try:
                fetch = self.source.sync()
            except PullnixError:
                metrics.record_fetch_failure()
                raise
            span.set_attributes(
                {
                    "url.full": fetch.url,
                    "vcs.ref.head.revision": fetch.tip_sha,
                    "pullnix.fetch.fetched": fetch.fetched,
                    "pullnix.fetch.attempts": fetch.attempts,
                }
            )
        return fetch

    def _load_spec(self, text: bytes, origin: str) -> NixOSDeployment:
        """The desired state for this host from `text`; the last one is kept, so a pass over
        an unchanged spec (most passes) neither parses nor validates it again. Only a spec
        that loaded is kept: a bad one is checked, and refused, every time."""
        key = hashlib.sha256(text).digest()
        if self._spec is not None and self._spec[0] == key:
            return self._spec[1]
        deployment = for_host(load_spec_text(text, origin=origin), self.machine.host)
        self._spec = (key, deployment)
        return deployment

    def _freshness(self, tip: str | None) -> Freshness | None:
        """How old the followed commit is (the last tip fetched, also while the remote is
        unreachable); None before any fetch."""
        try:
            committed_at = self.source.committed_at(tip) if tip else None
        except TerminalError:  # not in the mirror (a lost state dir)
            committed_at = None
        if tip is None or committed_at is None:
            return None
        fresh = freshness(tip, committed_at, time.time(), self.machine.source.max_age)
        metrics.record_source_freshness(committed_at, fresh.stale)
        return fresh

    def _pin_of(self, sha: str) -> str:
        """The spec.revision the desired state in commit `sha` pins for this host."""
        path = self.machine.source.spec_path
        return self._load_spec(self.source.read_file(sha, path), f"{path}@{sha[:12]}").spec.revision

    def _ingest(
        self, stored: StoredRecord, helper_status: HelperStatus, pass_trace: PassTrace
    ) -> tuple[StoredRecord, list[HistoryEntry]]:
        """Fold the helper's finished operations this agent has not seen yet into the record.

        Each also becomes spans under the trace of the pass that started it
        (rebuilt from the helper's journal) and counts in the metrics."""
        new_entries: list[HistoryEntry] = []
        seen = set(stored.seen_operations)
        for op in reversed(helper_status.recent):  # oldest first
            if op.id in seen:
                continue
            entry = entry_from_operation(op, stored.closure_diffs.get(op.id))
            stored = replace(
                stored,
                record=ingest(stored.record, entry),
                seen_operations=(*stored.seen_operations, op.id),
            ).finished(entry, op.request.source_revision or None)
            new_entries.append(entry)
            emit_operation(op)
            pass_trace.link(op.request.traceparent or None)
            pass_trace.set({"pullnix.result": entry.result})
            metrics.record_operation(entry.result, entry.kind, entry.health_checks)
            log.info(
                "operation %s ended %s for %s",
                entry.operation_id,
                entry.result,
                entry.revision[:12],
            )
        if new_entries or not helper_status.busy:
            # Builds the helper is done with, or that nothing is applying (an abandoned pass).
            current = helper_status.operation
            self.deployer.release_roots(keep=current.request.store_path if current else None)
        return stored, new_entries

    def _run_hooks(self, deployment: NixOSDeployment, entries: list[HistoryEntry]) -> None:
        hook = deployment.spec.hooks.post_deploy
        if hook is None:
            return
        for entry in entries:
            if entry.kind == "apply":
                run_post_deploy(hook, entry)

    def _act(
        self,
        action: d.Action,
        deployment: NixOSDeployment,
        target: Any,
        system: SystemObservation,
        stored: StoredRecord,
        traceparent: str,
    ) -> tuple[StoredRecord, str | None, ActivationPlan | None]:
        """Carry `action` out: the record after it, the helper's operation, and for a
        deploy how it is activated."""
        spec = deployment.spec
        if isinstance(action, d.Confirm):
            self.helper.confirm(operation_id=action.operation_id)
            return stored, action.operation_id, None
        if isinstance(action, d.Deploy):
            started = self.deployer.deploy(spec, target, system, traceparent)
            diffs = {**stored.closure_diffs, started.operation_id: started.closure_diff or ""}
            stored = stored.deploying(started.operation_id, target.tip.sha)
            return replace(stored, closure_diffs=diffs), started.operation_id, started.plan
        if isinstance(action, d.Reboot):
            return stored, self.deployer.reboot(stored.record, system, traceparent), None
        if isinstance(action, d.RevertDrift):
            op_id = self.deployer.apply_existing(
                spec, action.revision, action.store_path, traceparent
            )
            return stored, op_id, None
        return stored, None, None

    def _remember_failure(self, stored: StoredRecord, exc: TerminalError) -> StoredRecord:
        """A build or gate failure is tied to its commit, so decide() does not rebuild it."""
        revision = exc.revision
        if isinstance(exc, CommitFailure) and revision:
            failed = {**stored.record.failed, revision: d.Failure(exc.failure, exc.message)}
            retry = stored.record.retry_revision
            record = replace(
                stored.record, failed=failed, retry_revision=None if retry == revision else retry
            )
            return replace(stored, record=record)
        return stored

    def _write_status(
        self,
        previous: dict[str, Any],
        stored: StoredRecord,
        deployment: NixOSDeployment | None,
        fetch: FetchResult | None,
        system: SystemObservation | None,
        outcome: Outcome,
        new_entries: list[HistoryEntry],
        attempted: str | None,
        helper_config: str | None,
    ) -> None:
        now = utc_stamp()
        conditions = apply_outcome(conditions_of(previous), outcome, now, stored.generation)
        tip = (
            fetch.tip_sha
            if fetch
            else (previous.get("status", {}).get("source") or {}).get("revision")
        )
        if fresh := self._freshness(tip):  # SourceStale: reported, never acted on
            conditions = apply_freshness(conditions, fresh, now, stored.generation)
        history = history_of(previous)
        for entry in new_entries:
            history = append_history(history, entry)
        old_status = previous.get("status", {})
        status: dict[str, Any] = {
            "observedGeneration": stored.generation,
            "conditions": [c.to_json() for c in conditions],
            "lastAppliedRevision": stored.record.last_applied_revision,
            "lastAttemptedRevision": attempted or old_status.get("lastAttemptedRevision"),
            "currentGeneration": system.current_generation
            if system
            else old_status.get("currentGeneration"),
            "currentSystem": system.current_system if system else old_status.get("currentSystem"),
            "source": (
                {
                    "url": fetch.url,
                    "branch": fetch.branch,
                    "revision": fetch.tip_sha,
                    "skipped": list(fetch.skipped),
                }
                if fetch
                else old_status.get("source")
            ),
            "suspended": stored.record.suspended,
            "helperConfigError": helper_config,
            "lastPassAt": now,
            "history": [h.to_json() for h in history],
        }
        doc = {
            "apiVersion": "pullnix.dev/v1alpha1",
            "kind": "NixOSDeployment",
            "metadata": {
                "name": deployment.metadata.name
                if deployment
                else previous.get("metadata", {}).get("name", self.machine.host),
                "generation": stored.generation,
                "annotations": {"pullnix.dev/host": self.machine.host},
            },
            "spec": (
                deployment_to_data(deployment)["spec"] if deployment else previous.get("spec", {})
            ),
            "status": status,
        }
        self.store.save_status(doc)


def helper_config_error(helper_status: HelperStatus | None, previous: dict[str, Any]) -> str | None:
    """status.helperConfigError: why the helper refused a changed agent.toml (it runs on the
    old one), else None; as it was when the helper did not answer this pass."""
    if helper_status is None:
        return (previous.get("status") or {}).get("helperConfigError")
    error = helper_status.config_error
    return error if isinstance(error, str) else None


def _report(
    pass_trace: PassTrace,
    outcome: Outcome,
    stored: StoredRecord,
    system: SystemObservation | None,
    reboot: bool | None,
) -> None:
    """The pass's verdict on its root span and in the metrics."""
    pass_trace.set(
        {
            "pullnix.outcome": outcome.reason,
            "pullnix.phase": outcome.phase,
            "nix.store_path": system.current_system if system else None,
            "nixos.generation": system.current_generation if system else None,
        }
    )
    if outcome.phase in ("Stalled", "Failing"):
        pass_trace.fail(f"{outcome.reason}: {outcome.message}")
    metrics.record_state(
        revision=stored.record.last_applied_revision,
        store_path=stored.record.last_applied_store_path,
        generation=system.current_generation if system else None,
        reboot_required=reboot,
        suspended=stored.record.suspended,
    )


def _helper_view(status: HelperStatus) -> d.HelperView:
    if status.operation is None:
        return d.HelperView()
    return apply_request_view(status.operation)


def _verdict(entries: list[HistoryEntry]) -> bool | None:
    applied = [e for e in entries if e.kind == "apply"]
    if not applied:
        return None
    return applied[-1].result == "Succeeded"


def _bump_generation(stored: StoredRecord, deployment: NixOSDeployment) -> StoredRecord:
    digest = hashlib.sha256(repr(deployment_to_data(deployment)).encode()).hexdigest()
    if digest == stored.spec_digest:
        return stored
    return replace(stored, spec_digest=digest, generation=stored.generation + 1)


def _log_build_line(line: str) -> None:
    log.info("nix: %s", line)
