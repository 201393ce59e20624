"""Deploying one revision: build it, learn its facts, pass its gates, hand it to the helper.

Owns the act half of a Deploy decision: `nix build` from the mirror at the
exact commit (flake or classic), the facts about the result (closure diff,
switch inhibitors turning a switch into a boot: then no live trial and no
confirmation, see `core.activation`), the gates, and the `apply` request to
the helper with the spec's health checks in the helper's wire form. Also the
GC roots of built systems: released once the helper is done, and at once
when the deploy is abandoned after the build (a gate refuses, the helper
refuses or is busy). What the activation facts mean afterwards (a system
installed with `boot` that waits for a reboot, history entries saying why) is
`core.policy`'s.

Must not: decide whether to deploy (that is `core.decide`), wait for the
helper's verdict, or activate anything itself.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from reconciler.common.config import MachineConfig
from reconciler.common.protocol import ApplyRequest
from reconciler.controller.gates import run_gates
from reconciler.controller.prebuilt import fetch_prebuilt
from reconciler.core.activation import (
    ActivationPlan,
    boot_components_changed,
)
from reconciler.core.decide import AgentRecord
from reconciler.core.errors import PullnixError, TerminalError, TransientError
from reconciler.core.helper_terms import check_spec
from reconciler.core.model import DeploymentSpec
from reconciler.nix.build import (
    BuildSettings,
    BuiltSystem,
    build_classic,
    build_flake,
    held_roots,
    release,
)
from reconciler.nix.facts import boot_files, gather_facts
from reconciler.nix.observe import SystemObservation
from reconciler.source import AcceptedRevision, GitSource
from reconciler.telemetry.tracing import step

log = logging.getLogger("pullnix.deploy")


class HelperRefused(TransientError):
    """The helper said no to an apply (not busy): retried after a backoff, as the helper
    may be upgraded or its state change; the message says why."""

    reason = "HelperRefused"


@dataclass(frozen=True)
class Started:
    operation_id: str
    store_path: str
    action: str
    closure_diff: str | None
    plan: ActivationPlan


class Deployer:
    def __init__(
        self,
        machine: MachineConfig,
        source: GitSource,
        helper: HelperClient,
        on_build_line: Callable[[str], None],
    ) -> None:
        self.machine = machine
        self.source = source
        self.helper = helper
        self.on_build_line = on_build_line
        self.build_settings = BuildSettings(gcroots_dir=machine.state_dir / "gcroots")

    def deploy(
        self,
        spec: DeploymentSpec,
        target: AcceptedRevision,
        system: SystemObservation,
        traceparent: str,
    ) -> Started:
        sha = target.target.sha
        built: BuiltSystem | None = None
        try:
            with step("nix.build", {"vcs.ref.head.revision": sha}) as span:
                built = self._build(spec, target)
                store_path = built.store_path
                span.set_attribute("nix.store_path", store_path)
            facts = gather_facts(store_path, system.current_system, system.booted_system)
            plan = facts.activation(spec.strategy.action)
            if plan.changed:
                log.warning("revision %s: %s", sha[:12], plan.message)
            if spec.gates:
                with tempfile.TemporaryDirectory(prefix="pullnix-gates-") as tmp:
                    checkout = self.source.export_tree(sha, Path(tmp) / "tree")
                    for gate in spec.gates:  # one span each; the first refusal stops them
                        with step(f"gate.{gate.name}", {"nix.store_path": store_path}):
                            run_gates([gate], store_path, system.current_system, checkout)
            op_id = self._apply(
                spec, store_path, sha, plan, traceparent, source_revision=target.tip.sha
            )
        except PullnixError as exc:
            if built is not None:  # abandoned: nothing will commit it, so nothing holds it
                release(built)
            exc.revision = sha
            raise
        diff = facts.closure_diff.text if facts.closure_diff else None
        return Started(op_id, store_path, plan.action, diff, plan)

    def apply_existing(
        self, spec: DeploymentSpec, revision: str, store_path: str, traceparent: str
    ) -> str:
        """Re-apply a system already built (reverting drift)."""
        action = spec.strategy.action
        return self._apply(spec, store_path, revision, ActivationPlan(action, action), traceparent)

    def reboot_needed(self, system: SystemObservation) -> bool:
        if not system.current_system or not system.booted_system:
            return False
        return bool(
            boot_components_changed(
                boot_files(system.booted_system), boot_files(system.current_system)
            )
        )

    def release_roots(self, keep: str | None) -> None:
        """Drop the GC roots of builds the helper is done with (committed or abandoned)."""
        for link, path in held_roots(self.build_settings).items():
            if path != keep:
                link.unlink(missing_ok=True)

    def _build(self, spec: DeploymentSpec, target: AcceptedRevision) -> BuiltSystem:
        sha, host = target.target.sha, self.machine.host
        config = spec.configuration
        if config.prebuilt is not None:  # built by CI: fetched, never evaluated here
            return fetch_prebuilt(
                self.source,
                self.machine,
                config.prebuilt,
                sha,
                self.build_settings,
                self.on_build_line,
            )
        if config.flake is not None:
            return build_flake(
                self.source.mirror_path,
                target.ref,
                sha,
                config.flake,
                host,
                self.build_settings,
                on_line=self.on_build_line,
            )
        assert config.classic is not None
        with tempfile.TemporaryDirectory(prefix="pullnix-classic-") as tmp:
            exported = self.source.export_tree(sha, Path(tmp) / "tree")
            return build_classic(
                exported,
                config.classic,
                host,
                self.build_settings,
                revision=sha,
                on_line=self.on_build_line,
            )

    def _apply(
        self,
        spec: DeploymentSpec,
        store_path: str,
        revision: str,
        plan: ActivationPlan,
        traceparent: str,
        *,
        source_revision: str = "",
    ) -> str:
        """Ask the helper to activate `store_path` as `plan` says (trial, confirmation and
        health checks only for a system that runs before the next reboot)."""
        trial, require_confirm = plan.helper_request(spec.strategy.trial, spec.rollback.automatic)
        checks = spec.health_checks if plan.live else ()
        request = ApplyRequest(
            store_path=store_path,
            revision=revision,
            action=plan.action,
            trial=trial,
            health_checks=tuple(check_spec(c) for c in checks),
            confirm_timeout=spec.rollback.confirm_timeout,
            require_confirm=require_confirm,
            traceparent=traceparent,
            source_revision=source_revision,
        )
        try:
            return self.helper.submit(request)
        except HelperUnavailable as exc:
            raise TransientError(
                f"the helper does not answer: {exc}", reason="HelperUnavailable"
            ) from None
        except HelperError as exc:
            if exc.code == "busy":
                raise TransientError(f"the helper is busy: {exc}", reason="HelperBusy") from None
            raise HelperRefused(f"the helper refused the apply request: {exc}") from None

    def reboot(self, record: AgentRecord, system: SystemObservation, traceparent: str) -> str:
        """Ask the helper to reboot into the committed generation; its operation id. Not
        again after a reboot into that same system failed to bring it up."""
        expected = record.last_applied_store_path or system.profile_system
        if not expected:
            raise TerminalError("no committed generation to reboot into", reason="RebootFailed")
        try:
            recent = self.helper.helper_status().recent
            last = next((op for op in recent if op.kind == "reboot"), None)
            if last and last.request.store_path == expected and str(last.state) == "Failed":
                raise TerminalError(
                    f"the last reboot did not bring up {expected}: {last.message}; "
                    "check the boot loader, then reboot by hand",
                    reason="RebootFailed",
                )
            return self.helper.reboot(
                expected, record.last_applied_revision or "", traceparent=traceparent
            )
        except HelperUnavailable as exc:
            raise TransientError(
                f"the helper does not answer: {exc}", reason="HelperUnavailable"
            ) from None
        except HelperError as exc:
            if exc.code == "busy":
                reason = "RebootInhibited" if "inhibit" in str(exc) else "HelperBusy"
                raise TransientError(f"no reboot now: {exc}", reason=reason) from None
            raise HelperRefused(f"the helper refused to reboot: {exc}") from None
