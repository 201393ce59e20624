"""Deploying one revision: build it, learn its facts, pass its gates, hand it to the helper.

Owns the act half of a Deploy decision: `nix build` from the mirror at the
exact commit (flake or classic), the facts about the result (closure diff,
switch inhibitors turning a switch into a boot), the gates, and the `apply`
request to the helper with the spec's health checks in the helper's wire
form. Also the GC roots of built systems, released once the helper is done.

Must not: decide whether to deploy (that is `core.decide`), wait for the
helper's verdict, or activate anything itself.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.controller.gates import run_gates
from reconciler.core.activation import boot_components_changed
from reconciler.core.decide import HelperView
from reconciler.core.errors import PullnixError, TransientError
from reconciler.core.model import (
    Command,
    DeploymentSpec,
    HealthCheck,
    HttpCheck,
    SystemdCheck,
    TcpCheck,
)
from reconciler.helper.client import HelperClient, HelperError, HelperUnavailable
from reconciler.helper.config import MachineConfig
from reconciler.nix.build import BuildSettings, build_classic, build_flake, held_roots
from reconciler.nix.facts import boot_files, gather_facts
from reconciler.nix.observe import SystemObservation
from reconciler.source import AcceptedRevision, GitSource
from reconciler.telemetry.tracing import step


@dataclass(frozen=True)
class Started:
    operation_id: str
    store_path: str
    action: str
    closure_diff: str | None


class Deployer:
    def __init__(self, machine: MachineConfig, source: GitSource, helper: HelperClient,
                 on_build_line: Callable[[str], None]) -> None:
        self.machine = machine
        self.source = source
        self.helper = helper
        self.on_build_line = on_build_line
        self.build_settings = BuildSettings(gcroots_dir=machine.state_dir / "gcroots")

    def deploy(self, spec: DeploymentSpec, target: AcceptedRevision,
               system: SystemObservation, traceparent: str) -> Started:
        sha = target.target.sha
        try:
            with step("nix.build", {"vcs.ref.head.revision": sha}) as span:
                store_path = self._build(spec, target)
                span.set_attribute("nix.store_path", store_path)
            facts = gather_facts(store_path, system.current_system, system.booted_system)
            plan = facts.activation(spec.strategy.action)
            if spec.gates:
                with tempfile.TemporaryDirectory(prefix="pullnix-gates-") as tmp:
                    checkout = self.source.export_tree(sha, Path(tmp) / "tree")
                    for gate in spec.gates:  # one span each; the first refusal stops them
                        with step(f"gate.{gate.name}", {"nix.store_path": store_path}):
                            run_gates([gate], store_path, system.current_system, checkout)
        except PullnixError as exc:
            exc.revision = sha
            raise
        diff = facts.closure_diff.text if facts.closure_diff else None
        op_id = self._apply(spec, store_path, sha, plan.action, traceparent)
        return Started(op_id, store_path, plan.action, diff)

    def apply_existing(self, spec: DeploymentSpec, revision: str, store_path: str,
                       traceparent: str) -> str:
        """Re-apply a system already built (reverting drift)."""
        return self._apply(spec, store_path, revision, spec.strategy.action, traceparent)

    def reboot_needed(self, system: SystemObservation) -> bool:
        if not system.current_system or not system.booted_system:
            return False
        return bool(boot_components_changed(boot_files(system.booted_system),
                                            boot_files(system.current_system)))

    def release_roots(self, keep: str | None) -> None:
        """Drop the GC roots of builds the helper is done with (committed or abandoned)."""
        for link, path in held_roots(self.build_settings).items():
            if path != keep:
                link.unlink(missing_ok=True)

    def _build(self, spec: DeploymentSpec, target: AcceptedRevision) -> str:
        sha, host = target.target.sha, self.machine.host
        config = spec.configuration
        if config.flake is not None:
            return build_flake(self.source.mirror_path, target.ref, sha, config.flake, host,
                               self.build_settings, on_line=self.on_build_line).store_path
        assert config.classic is not None
        with tempfile.TemporaryDirectory(prefix="pullnix-classic-") as tmp:
            exported = self.source.export_tree(sha, Path(tmp) / "tree")
            return build_classic(exported, config.classic, host, self.build_settings,
                                 revision=sha, on_line=self.on_build_line).store_path

    def _apply(self, spec: DeploymentSpec, store_path: str, revision: str, action: str,
               traceparent: str) -> str:
        try:
            return self.helper.apply(
                store_path, revision=revision, action=action, trial=spec.strategy.trial,
                health_checks=[check_to_wire(c) for c in spec.health_checks],
                confirm_timeout=spec.rollback.confirm_timeout,
                require_confirm=spec.rollback.automatic, traceparent=traceparent)
        except HelperUnavailable as exc:
            raise TransientError(f"the helper does not answer: {exc}",
                                 reason="HelperUnavailable") from None
        except HelperError as exc:
            if exc.code == "busy":
                raise TransientError(f"the helper is busy: {exc}", reason="HelperBusy") from None
            raise PullnixError(f"the helper refused the apply request: {exc}",
                               reason="HelperRefused") from None


def check_to_wire(check: HealthCheck) -> dict[str, Any]:
    """A spec health check in the helper's wire form (durations in seconds)."""
    wire: dict[str, Any] = {"name": check.name, "timeout": check.timeout,
                            "retries": check.retries, "interval": check.interval}
    kind = check.kind
    match kind:
        case HttpCheck():
            http: dict[str, Any] = {"url": kind.url, "expectStatus": kind.expect_status}
            if kind.body_regex is not None:
                http["bodyRegex"] = kind.body_regex
            wire["http"] = http
        case TcpCheck():
            wire["tcp"] = {"host": kind.host, "port": kind.port}
        case SystemdCheck():
            wire["systemd"] = {"units": list(kind.units)}
        case Command():
            wire["command"] = {"argv": list(kind.argv)}
        case _:
            wire["gitRemote"] = {}
    return wire


def apply_request_view(op: Mapping[str, Any]) -> HelperView:
    """What `decide` needs to know of the helper's operation in progress."""
    request = op.get("request") or {}
    return HelperView(
        busy=True,
        operation_id=op.get("id"),
        state=op.get("state"),
        store_path=op.get("storePath"),
        revision=op.get("revision") or None,
        awaiting_confirm=(op.get("state") == "Verifying"
                          and bool(request.get("requireConfirm"))),
        confirmed=op.get("confirmedAt") is not None,
    )
