"""The machine converges whatever happens to the agent, and drift is seen and undone.

The agent is killed in each phase of a deploy - during the Nix build, by the
activation it asked for (as systemd restarts the unit), while the helper
verifies and waits for its confirmation - and a supervisor restarts it as
systemd's Restart=always would.
The deploy still ends once, recorded once, with its post-deploy hook run once.
Drift is someone running `switch-to-configuration` by hand, as nixos-rebuild
does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentmachine import AgentProcess, Machine, fake_machine, spec_yaml, wait_for
from tests.support.nixfixture import (
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    read_calls,
    set_profile,
)

pytestmark = [pytest.mark.nix, pytest.mark.slow]

HOOK = """#!/bin/sh
echo "$PULLNIX_RESULT $PULLNIX_REVISION $PULLNIX_GENERATION $PULLNIX_STORE_PATH" >> "$0.log"
"""


class Supervisor:
    """Restarts `pullnix agent` whenever it exits, as systemd's Restart=always does."""

    def __init__(self, machine: Machine, pidfile: Path) -> None:
        self.machine = machine
        self.pidfile = pidfile
        self.stop = threading.Event()
        self.agent = self._start()
        self.restarts = 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self) -> AgentProcess:
        agent = self.machine.start_agent(wait=False)
        self.pidfile.write_text(f"{agent.pid}\n")
        return agent

    def _watch(self) -> None:
        while not self.stop.wait(0.05):
            if self.agent.proc.poll() is not None:
                self.restarts += 1
                self.agent = self._start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    with fake_machine(tmp_path) as machine:
        spec = spec_yaml(
            machine.sandbox,
            confirm_timeout="60s",
            hook=f'  hooks:\n    postDeploy: {{argv: ["{hook}"]}}\n',
        )
        commit_fleet(machine.repo, files={"pullnix.yaml": spec}, message="fleet: the hook")
        yield machine


def applied(machine: Machine) -> str | None:
    """lastAppliedRevision, or None before the first pass wrote a status."""
    done = machine.cli("status", "--json")
    if not done.stdout.strip():
        return None
    return json.loads(done.stdout)["status"].get("lastAppliedRevision")  # type: ignore[no-any-return]


def hook_runs(machine: Machine) -> list[list[str]]:
    log = machine.tmp / "hook.sh.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def in_agent_log(machine: Machine, text: str) -> bool:
    return any(text in agent.log_text() for agent in machine.agents)


def helper_state(machine: Machine) -> str | None:
    op = machine.helper.client.status().get("operation")
    return None if op is None else str(op["state"])


@pytest.mark.parametrize("phase", ["build", "activation", "helper-at-work"])
def test_an_agent_killed_during_a_deploy_is_restarted_and_the_deploy_ends_once(
    machine: Machine, phase: str
) -> None:
    pidfile = machine.tmp / "agent.pid"
    supervisor = Supervisor(machine, pidfile)
    try:
        wait_for(
            lambda: applied(machine) is not None, 120, "the agent to adopt the installed commit"
        )
        machine.wait_idle()
        knobs: dict[str, object] = {"version": "2"}
        if phase == "build":
            knobs["build_seconds"] = 3
        if phase == "activation":
            knobs["kill_pidfile"] = pidfile  # activation SIGTERMs the agent, like systemd
        sha = commit_fleet(machine.repo, **knobs)  # type: ignore[arg-type]
        first = supervisor.agent
        if phase == "build":
            wait_for(lambda: in_agent_log(machine, "building slowly"), 60, "the build")
            first.proc.send_signal(signal.SIGKILL)
        if phase == "helper-at-work":  # verifying (waiting for a confirm) or just past it
            wait_for(
                lambda: (
                    helper_state(machine) in ("Verifying", "Committing", "Succeeded")
                    or machine.current() == machine.built(sha)
                ),
                60,
                "the helper to verify",
            )
            if first.proc.poll() is None:
                os.kill(first.pid, signal.SIGKILL)
        wait_for(lambda: supervisor.restarts >= 1, 60, "the agent to be restarted")
        wait_for(lambda: applied(machine) == sha, 120, "the restarted agent to converge")
        machine.wait_idle()
    finally:
        supervisor.close()
    status = machine.status()["status"]
    assert machine.condition("Ready")["status"] == "True"
    assert machine.current() == machine.built(sha)
    assert [e["result"] for e in status["history"] if e["revision"] == sha] == ["Succeeded"]
    switched = [
        c["action"] for c in read_calls(machine.sandbox) if c["toplevel"] == machine.built(sha)
    ]
    assert switched.count("boot") == 1  # committed once
    assert [r[:2] for r in hook_runs(machine) if r[1] == sha] == [["Succeeded", sha]]


def test_drift_is_reported_and_left_alone_with_driftpolicy_report(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    applied = machine.current()
    by_hand = run_nixos_rebuild_by_hand(machine)

    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Drifted")
    assert by_hand in ready["message"]
    assert "driftPolicy: revert" in ready["message"]
    assert machine.current() == by_hand  # reported, not touched
    assert machine.status()["status"]["currentSystem"] == by_hand
    assert applied != by_hand


def test_drift_is_reverted_with_driftpolicy_revert(machine: Machine) -> None:
    spec = spec_yaml(machine.sandbox) + "  driftPolicy: revert\n"
    sha = commit_fleet(machine.repo, files={"pullnix.yaml": spec}, message="fleet: revert drift")
    assert machine.reconcile().returncode == 0
    applied = machine.current()
    run_nixos_rebuild_by_hand(machine)

    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    assert machine.current() == applied
    status = machine.status()["status"]
    assert status["lastAppliedRevision"] == sha
    assert status["currentSystem"] == applied
    assert machine.condition("Ready")["status"] == "True"
    assert [c["action"] for c in read_calls(machine.sandbox)][-2:] == ["test", "boot"]


def run_nixos_rebuild_by_hand(machine: Machine) -> str:
    """What an operator's `nixos-rebuild switch` of some other configuration does."""
    other = init_fleet_repo(machine.tmp / "by-hand", machine.sandbox, version="by-hand")
    path = build_toplevel(other.flake_ref(), "edge-01")
    set_profile(machine.sandbox, path)
    subprocess.run([f"{path}/bin/switch-to-configuration", "switch"], check=True, timeout=60)
    assert machine.current() == path
    return path
