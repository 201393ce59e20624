"""A crash soak: the agent and the helper SIGKILLed at seeded random moments, then the checks.

Owns the schedule and the invariants, shared by the integration test (a minute
or so, in CI) and `python -m bench --sections soak` (longer). Each round pushes
one of: a good commit (a deploy), a commit whose new generation is unhealthy
(a rollback) or a commit that changes no system (a fetch alone); waits a
random moment (seeded, so a failing seed can be replayed) and SIGKILLs the
agent, the helper or both, which a supervisor restarts as systemd would. Then
a last good commit must converge, and:

- the system profile, the running system and the boot default agree;
- no state file of the agent or the helper is half-written (every JSON file
  parses; the helper, which sweeps at start, has no temp file left);
- no operation appears twice in the history;
- the agent is Ready on the last commit.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field

from tests.support.agentmachine import Machine, wait_for
from tests.support.helperproc import start_helper
from tests.support.nixfixture import commit_fleet

KINDS = ("deploy", "rollback", "fetch")


@dataclass
class SoakReport:
    seed: int
    rounds: list[tuple[str, float, str]] = field(default_factory=list)  # kind, delay, killed

    def __str__(self) -> str:
        shown = ", ".join(f"{k}+{d:.2f}s:{v}" for k, d, v in self.rounds)
        return f"seed {self.seed}: {len(self.rounds)} rounds: {shown}"


def run_soak(machine: Machine, seed: int, seconds: float) -> SoakReport:
    """Kill and restart for about `seconds`, then converge and check the invariants."""
    rng = random.Random(seed)
    report = SoakReport(seed)
    machine.start_agent()
    deadline = time.monotonic() + seconds
    version = 100
    while time.monotonic() < deadline:
        kind = rng.choice(KINDS)
        version += 1
        if kind == "fetch":
            commit_fleet(machine.repo, files={f"notes/{version}.txt": "x\n"}, message="notes")
        else:
            health = "broken" if kind == "rollback" else "ok"
            commit_fleet(machine.repo, version=str(version), health=health, message=kind)
        delay = rng.uniform(0.0, 4.0)
        victim = rng.choice(("agent", "helper", "both"))
        time.sleep(delay)
        if victim in ("agent", "both"):
            _kill_agents(machine)
        if victim in ("helper", "both"):
            machine.helper.kill()
            machine.helper = start_helper(machine.paths)
        if victim in ("agent", "both"):
            machine.start_agent()
        report.rounds.append((kind, delay, victim))
    final = commit_fleet(machine.repo, version="final", health="ok", message="the last one")
    wait_for(lambda: _ready_on(machine, final), 240, f"convergence on {final[:12]} ({report})")
    check_invariants(machine, report)
    return report


def _kill_agents(machine: Machine) -> None:
    for agent in machine.agents:
        if agent.proc.poll() is None:
            agent.kill()


def _ready_on(machine: Machine, sha: str) -> bool:
    status = machine.status()["status"]
    ready = next((c for c in status["conditions"] if c["type"] == "Ready"), None)
    return status.get("lastAppliedRevision") == sha and bool(ready) and ready["status"] == "True"


def check_invariants(machine: Machine, report: SoakReport) -> None:
    sandbox = machine.sandbox
    links = {
        "profile": os.path.realpath(sandbox.profile),
        "current system": os.path.realpath(sandbox.current_system),
        "boot default": os.path.realpath(sandbox.boot_default),
    }
    assert len(set(links.values())) == 1, f"{report}: {links}"
    for state_dir in (machine.tmp / "agent-state", machine.paths.state_dir):
        for path in state_dir.rglob("*.json"):
            if "mirror.git" not in path.parts:
                json.loads(path.read_text())  # half-written: raises
    leftovers = list(machine.paths.state_dir.rglob(".*.tmp"))  # the helper sweeps at start
    assert not leftovers, f"{report}: {leftovers}"
    history = machine.history()
    ids = [h.get("operationId") for h in history if h.get("operationId")]
    assert len(ids) == len(set(ids)), f"{report}: duplicate history {ids}"
