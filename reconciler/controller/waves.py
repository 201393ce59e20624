"""The pass's hook for waves: hold a deploy back until its wave may go, and tell the fleet.

Owns the two places a pass meets `spec.rollout.waves`: after `decide`, a
Deploy is put to `core.waves.gate` with the fleet as Prometheus answers
(asked only for a host after wave 0, through the backed-off `FleetAsker`);
after the status is written, the `pullnix_fleet_*` metrics are updated.

Must not: decide (the gate is pure) or loop; a held deploy is looked at
again on the next pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from reconciler.common.config import MachineConfig
from reconciler.core import decide as d
from reconciler.core import waves
from reconciler.core.model import NixOSDeployment, WaveAfter
from reconciler.telemetry import fleet_metrics
from reconciler.telemetry.fleet_query import FleetAsker


class WaveGate:
    def __init__(self, machine: MachineConfig) -> None:
        self.host = machine.host
        self.asker = FleetAsker(
            machine.fleet.prometheus_url, machine.fleet.query_timeout, clock=time.time
        )
        self.place = waves.Place("", 0, WaveAfter())  # this host's wave in the last spec read

    def hold(self, deployment: NixOSDeployment, action: d.Action) -> d.Action:
        """`action`, or why its deploy must wait (WaitForWave) or never come (RolloutHalted)."""
        rollout = deployment.spec.rollout
        self.place = waves.place_of(rollout, self.host)
        if not isinstance(action, d.Deploy) or not waves.needs_fleet(rollout, self.host):
            return action
        fleet = self.asker.ask(waves.earlier_waves(rollout, self.host), action.revision)
        verdict = waves.gate(rollout, self.host, action.revision, fleet, time.time())
        return action if isinstance(verdict, waves.Go) else verdict

    def report(
        self,
        status_doc: Mapping[str, Any],
        failed: Mapping[str, d.Failure],
        action: d.Action | None,
    ) -> None:
        fleet_metrics.record_pass(self.host, self.place, status_doc, failed, action, time.time())
